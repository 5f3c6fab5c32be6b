"""The model bundle: writing, reading and checking ``.ursa`` files."""

from ursa.core.bundle import Bundle, BundleConfig, read_bundle, write_bundle

__all__ = ["Bundle", "BundleConfig", "read_bundle", "write_bundle"]
