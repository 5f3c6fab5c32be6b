"""Cleaning-server settings: one pydantic-settings class, read from ``URSA_CLEAN_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ursa.clean.journal import FAULT_POINTS
from ursa.core.hostnames import ANY_ADDRESS, LOOPBACK_NAMES, own_names


class CleanSettings(BaseSettings):
    """What ``ursa clean`` serves; every field can be set as ``URSA_CLEAN_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="URSA_CLEAN_", extra="ignore")

    bundle: Path
    """The ``.ursa`` bundle whose predictions and losses order the images."""
    data: Path
    """The dataset folder to clean (one folder per class, or train/ and valid/)."""
    host: str = "127.0.0.1"
    """Address the server listens on; the page only answers requests naming it. An IPv6
    address may be given with or without brackets (``::1`` or ``[::1]``)."""
    port: int = Field(default=8100, ge=1, le=65535)
    page_size: int = Field(default=48, ge=1, le=500)
    """Images per page of the grid."""
    thumbnail_px: int = Field(default=256, ge=32, le=1024)
    """Longest side of a thumbnail."""
    max_body_bytes: int = Field(default=16_384, ge=1_024, le=16 * 1024 * 1024)
    """Longest request body read, in bytes (a decision is a few dozen). Checked on the
    ``Content-Length`` header before any of the body is read; longer is refused with 413."""
    fault: str | None = None
    """For crash tests only: kill the server at this point of every change
    (before-move: the intent is journaled, the file not moved; after-move)."""

    @field_validator("host")
    @classmethod
    def _unbracketed(cls, value: str) -> str:
        """``[::1]`` (as in a URL) is the address ``::1``."""
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        return value

    @field_validator("fault")
    @classmethod
    def _known_fault(cls, value: str | None) -> str | None:
        if value is not None and value not in FAULT_POINTS:
            raise ValueError(f"use one of {', '.join(FAULT_POINTS)}")
        return value

    def allowed_hosts(self) -> list[str]:
        """Host names the server answers to: loopback names, and the address it listens on.

        Checking the Host header stops a web page that points its own domain at
        127.0.0.1 (DNS rebinding) from reading the page and its token. Listening on
        every address (0.0.0.0) adds this machine's names and their addresses, never
        any name at all. An IPv6 address is compared without its brackets (the Host
        header ``[::1]:8100`` names ``::1``).
        """
        names = set(LOOPBACK_NAMES)
        if self.host not in ANY_ADDRESS:
            return sorted(names | {self.host.lower()})
        return sorted(names | own_names())
