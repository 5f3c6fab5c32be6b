"""Finding, labelling, splitting and opening images; turning them into batches."""

from ursa.data.core import DataConfig, ImageData
from ursa.data.imageio import open_image
from ursa.data.items import Item
from ursa.data.preprocess import PreprocessConfig, preprocess

__all__ = ["DataConfig", "ImageData", "Item", "PreprocessConfig", "open_image", "preprocess"]
