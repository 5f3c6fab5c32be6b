"""Finding, labelling, splitting and opening images; turning them into batches."""

from ursa.core.imageio import open_image
from ursa.core.items import Item
from ursa.core.preprocess import PreprocessConfig, preprocess
from ursa.data.core import DataConfig, ImageData

__all__ = ["DataConfig", "ImageData", "Item", "PreprocessConfig", "open_image", "preprocess"]
