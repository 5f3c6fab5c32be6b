"""What this CPU's int8 kernels compute: exactly, or with 16-bit saturation.

ONNX Runtime multiplies uint8 activations by int8 weights. With VNNI (AVX-512 VNNI or
AVX-VNNI on x86, or AMX), and on ARM (its dot-product instructions), every product is
summed in 32 bits. On other x86 CPUs (AVX2, and AVX-512 without VNNI: Zen 2 and 3,
Skylake to Cascade Lake before VNNI...) it uses ``vpmaddubsw``, which adds two products
in a *saturating 16-bit* sum: 255 × 127 × 2 = 64,770 does not fit in 32,767, so a model
whose weights use all of int8 gives different, worse logits there. Measured on a fine-tuned
EfficientNet-Lite0 (docs/export-and-serve.md, "int8 on CPUs without VNNI"): top-1
agreement with fp32 53 % on an AVX2 CPU against 90 % computed exactly.

Weights on 7 bits (−64…64) cannot saturate: 255 × 64 × 2 = 32,640.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Literal

Int8Kernels = Literal["exact", "saturating", "unknown"]

#: x86 CPU flags (Linux /proc/cpuinfo names) whose int8 dot products sum in 32 bits.
EXACT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
#: Weight bits that never saturate on any CPU.
PORTABLE_WEIGHT_BITS = 7


#: ``platform.machine()`` names (lower case) of x86 CPUs.
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


def is_x86() -> bool:
    """Whether this is an x86 CPU, where int8 kernels may saturate."""
    return platform.machine().lower() in X86_MACHINES


@functools.cache
def int8_kernels(cpuinfo: Path = Path("/proc/cpuinfo")) -> Int8Kernels:
    """``exact`` (ARM, or x86 with VNNI), ``saturating`` (x86 without it), or ``unknown``
    (x86 where the flags cannot be read: not Linux)."""
    machine = platform.machine().lower()
    if machine in {"aarch64", "arm64", "armv8l"}:
        return "exact"
    if machine not in X86_MACHINES:
        return "unknown"
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return "unknown"
    return kernels_from_flags(text)


def kernels_from_flags(cpuinfo: str) -> Int8Kernels:
    """What :func:`int8_kernels` says for an x86 CPU whose /proc/cpuinfo is ``cpuinfo``."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return "exact" if EXACT_FLAGS & set(value.split()) else "saturating"
    return "unknown"


def weight_bits_for(kernels: Int8Kernels) -> int:
    """The int8 weight bits ``ursa export --int8`` uses by default on such a CPU: all 8
    where the kernels are exact, else 7 (whose accuracy holds on every CPU)."""
    return 8 if kernels == "exact" else PORTABLE_WEIGHT_BITS


def saturation_warning(weight_bits: int, kernels: Int8Kernels | None = None) -> str | None:
    """What to tell someone running an int8 model with ``weight_bits`` weights here, or
    None when its accuracy holds on this CPU."""
    kernels = int8_kernels() if kernels is None else kernels
    if weight_bits <= PORTABLE_WEIGHT_BITS or kernels != "saturating":
        return None
    return (
        f"this int8 model has {weight_bits}-bit weights, which this CPU's int8 kernels "
        "(x86 without VNNI) sum with 16-bit saturation: its accuracy here may be lower than "
        "on a CPU with VNNI or ARM, where 8-bit weights are meant to run. Serve fp32, or "
        "re-export with `ursa export BUNDLE --int8 --calibrate DATA --int8-weights 7` "
        "(weights that never saturate)"
    )
