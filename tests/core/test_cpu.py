"""``ursa.core.cpu``: what the CPU flags say about int8 kernels, and the warning it gives
(checked against this machine's own ONNX Runtime in ``tests/export/test_int8_cpu.py``)."""

from __future__ import annotations

from ursa.core.cpu import kernels_from_flags, saturation_warning, weight_bits_for

VNNI_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni\n"
AVX2_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_vnni_flags_mean_exact_kernels_and_8_bit_weights() -> None:
    assert kernels_from_flags(VNNI_FLAGS) == "exact"
    assert kernels_from_flags(VNNI_FLAGS.replace("avx512_vnni", "avx_vnni")) == "exact"
    assert kernels_from_flags(AVX2_FLAGS) == "saturating"
    assert kernels_from_flags("processor\t: 0\n") == "unknown"
    assert weight_bits_for("exact") == 8
    assert weight_bits_for("saturating") == weight_bits_for("unknown") == 7


def test_the_warning_is_for_8_bit_weights_on_saturating_kernels_only() -> None:
    warning = saturation_warning(8, "saturating")
    assert warning is not None and "--int8-weights 7" in warning and "fp32" in warning
    assert saturation_warning(7, "saturating") is None
    assert saturation_warning(8, "exact") is None
    assert saturation_warning(8, "unknown") is None
