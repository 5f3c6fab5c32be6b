"""The serve stage: a torch-free ONNX Runtime predictor and the inference server.

``import ursa.serve`` never imports torch or timm: a deployment installs
``ursa[serve]`` (onnxruntime, fastapi, uvicorn, numpy, pillow) only.
"""

from ursa.core.runtime import Predictor, available_providers

__all__ = ["Predictor", "available_providers"]
