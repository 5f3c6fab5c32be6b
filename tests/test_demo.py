from __future__ import annotations

from pathlib import Path

from PIL import Image

from ursa.demo import write_digits


def test_digits_are_written_as_class_folders_with_held_back_images(tmp_path: Path) -> None:
    holdout = write_digits(tmp_path, holdout_per_class=2)
    classes = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert classes == [str(d) for d in range(10)]
    written = list((tmp_path / "data").rglob("*.png"))
    assert len(written) + len(holdout) == 1797  # every digit of load_digits, once
    assert sorted(label for _, label in holdout) == sorted([str(d) for d in range(10)] * 2)
    held_names = {path.name for path, _ in holdout}
    assert not held_names & {path.name for path in written}  # never trained or validated on
    with Image.open(written[0]) as image:
        assert image.size == (32, 32) and image.mode == "L"
        assert image.getpixel((0, 0)) > 200  # dark ink on a white page
