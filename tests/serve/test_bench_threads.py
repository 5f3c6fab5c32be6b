"""``ursa bench``'s model-alone rows at each thread setting (the throughput reference)."""

from __future__ import annotations

from pathlib import Path

from ursa.core.runtime import cpu_count
from ursa.serve import Predictor
from ursa.serve.bench import bench_model_threads


def test_model_alone_is_timed_at_one_thread_and_one_session_per_core(
    tiny_served: tuple[Path, Path],
) -> None:
    bundle, folder = tiny_served
    array = Predictor(bundle).prepare(sorted(folder.rglob("*.png"))[0])[None]
    rows = bench_model_threads(bundle, False, array, 12, "fp32")
    assert rows[0].mode == "model only, 1 thread" and rows[0].concurrency == 1
    assert rows[0].requests == 12 and rows[0].images_per_s > 0
    cores = cpu_count()
    if cores > 1:
        side_by_side = rows[1]
        assert side_by_side.mode == "model only, 1 thread each"
        assert side_by_side.concurrency == cores
        assert side_by_side.requests == cores * (12 // cores) and side_by_side.images_per_s > 0
    assert len(rows) == (2 if cores > 1 else 1)
