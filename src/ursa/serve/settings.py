"""Server settings: one pydantic-settings class, read from ``URSA_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class ServeSettings(BaseSettings):
    """What ``ursa serve`` runs; every field can be set as ``URSA_<FIELD>`` (e.g. URSA_INT8=1)."""

    model_config = SettingsConfigDict(env_prefix="URSA_", extra="ignore")

    bundle: Path
    """The ``.ursa`` bundle to serve; it must contain model.onnx (``ursa export --onnx``)."""
    int8: bool = False
    """Serve model.int8.onnx instead of model.onnx."""
    provider: str = "cpu"
    """ONNX Runtime execution provider: cpu, cuda or tensorrt."""
    threads: int | None = Field(default=None, ge=1)
    """ONNX Runtime threads per process (default: usable cores / workers)."""
    workers: int = Field(default=1, ge=1)
    """Server processes (each loads its own model)."""
    max_body_bytes: int = Field(default=8 * MIB, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    max_pixels: int = Field(default=40_000_000, ge=1)
    """Largest image (width × height) decoded; larger ones get 413."""
    max_queue: int = Field(default=64, ge=1)
    """Prediction requests admitted at once (decoding, queued or running); more get 503."""
    max_batch: int | None = Field(default=None, ge=1)
    """Most images run through the model together (micro-batching); 1 turns it off.
    Default: 8 for int8 models and GPU providers, where batches raise throughput, 1 for
    fp32 on the CPU, where (measured on a 2-core EPYC) they lower it."""

    def effective_max_batch(self) -> int:
        if self.max_batch is not None:
            return self.max_batch
        return 8 if self.int8 or self.provider != "cpu" else 1

    max_batch_images: int = Field(default=32, ge=1)
    """Most images in one POST /predict/batch request."""
    top_k: int = Field(default=5, ge=1)
    """Classes listed in each answer's ``top``."""
