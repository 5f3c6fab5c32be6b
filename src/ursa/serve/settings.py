"""Server settings: one pydantic-settings class, read from ``URSA_*`` environment variables."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ursa.core.errors import ConfigError
from ursa.core.hostnames import ANY_ADDRESS, LOOPBACK_NAMES, own_names

MIB = 1024 * 1024

#: ``URSA_HTTP``: which HTTP/1.1 parser ``ursa serve`` uses; ``auto`` is httptools when installed.
HttpParser = Literal["auto", "httptools", "h11"]
#: What a server asked for httptools without it is told.
HTTPTOOLS_MISSING = (
    "httptools is not installed: pip install httptools (ursa[serve] installs it), "
    "or set URSA_HTTP=h11"
)


def httptools_installed() -> bool:
    """Whether uvicorn's httptools protocol can be used (``httptools`` is installed)."""
    return importlib.util.find_spec("httptools") is not None


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
    http: HttpParser = "auto"
    """HTTP/1.1 parser of ``ursa serve``: httptools (in C; ``auto`` picks it when installed,
    as ``ursa[serve]`` installs it) or h11 (pure Python, uvicorn's fallback)."""
    host: str = "127.0.0.1"
    """Address the server listens on (``ursa serve --host``); the Host check accepts it."""
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Host header names accepted besides the loopback names and ``host``, comma separated
    (``models.example.com, *.internal``); ``*`` accepts any, for a proxy that checks Host
    itself. A browser page on another name is refused (DNS rebinding)."""
    max_body_bytes: int = Field(default=8 * MIB, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    max_batch_body_bytes: int = Field(default=16 * MIB, ge=1024)
    """Largest POST /predict/batch form accepted; larger ones get 413."""
    body_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send a whole request body (and, on a new connection, its
    first request's headers); slower bodies get 408 and the connection is closed."""
    max_connections_per_client: int = Field(default=128, ge=0)
    """Open connections one client address (IPv6: one /64) may hold; more are answered 503
    and closed. 0: no limit (behind a proxy, every client has the proxy's address)."""
    max_pixels: int = Field(default=40_000_000, ge=1)
    """Largest image (width × height) decoded; larger ones get 413."""
    max_decoded_bytes: int = Field(default=128 * MIB, ge=1024)
    """Largest decoded image, width × height × bytes per pixel of its mode as Pillow holds
    it (1 for 8-bit gray and palette, 2 for 16-bit gray, 4 for RGB, RGBA, CMYK, 32-bit and
    float), checked from the header before any pixel is decoded; larger ones get 413.
    Converting one to RGB takes about twice this at its peak."""
    max_decoding_bytes: int = Field(default=256 * MIB, ge=1024)
    """Decoded bytes of all the images being decoded at once (by every decoder thread);
    an upload waits for room. Bounds decode memory whatever the number of cores."""
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

    @field_validator("http")
    @classmethod
    def _parser_installed(cls, value: HttpParser) -> HttpParser:
        if value == "httptools" and not httptools_installed():
            raise ValueError(HTTPTOOLS_MISSING)
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @classmethod
    def load(cls, **values: Any) -> ServeSettings:
        """Settings from ``values`` and ``URSA_*`` variables; a bad one raises
        :class:`ConfigError` naming the variable and the fix."""
        try:
            return cls(**values)
        except ValidationError as error:
            problems = [
                f"URSA_{'_'.join(map(str, problem['loc'])).upper()}: {problem['msg']}"
                f" (got {problem.get('input')!r})"
                for problem in error.errors()
            ]
            raise ConfigError("invalid server settings: " + "; ".join(problems)) from None

    def host_names(self) -> list[str]:
        """Host header names the server answers to (lower case, IPv6 without brackets):
        the loopback names, ``host`` (or, listening on every address, this machine's names
        and addresses) and ``allowed_hosts``."""
        names = set(LOOPBACK_NAMES)
        if self.host in ANY_ADDRESS:
            names |= own_names()
        else:
            names.add(self.host)
        names |= set(self.allowed_hosts)
        return sorted({name.strip().strip("[]").lower() for name in names if name.strip()})
