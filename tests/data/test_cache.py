"""The decode cache: decoded once, read back exactly, rebuilt when files or settings change."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ursa.core.errors import ConfigError, DataError, ImageError
from ursa.core.imageio import MAX_PIXELS, ImageSource
from ursa.core.preprocess import PreprocessConfig, prepare_input, resize_for_model
from ursa.core.sources import ImageInput
from ursa.data.cache import (
    CACHE_FORMAT,
    DecodeCache,
    build_cache,
    cache_dir,
    clear_cache,
    stored_form,
)
from ursa.data.core import ImageData

SIZE = 32
#: Widths × heights on both sides of SIZE, portrait and landscape.
SHAPES = [(120, 80), (60, 90), (200, 50), (20, 30), (33, 33), (90, 120)]


@dataclass(frozen=True)
class CountingInput(ImageInput):
    """Image files, with one line appended to ``log`` per file opened (in any process)."""

    log: str = ""

    def open(
        self, source: ImageSource, *, max_pixels: int = MAX_PIXELS, min_size: int | None = None
    ) -> Image.Image:
        with open(self.log, "a", encoding="utf-8") as stream:
            stream.write(f"{source}\n")
        return super().open(source, max_pixels=max_pixels, min_size=min_size)


def opened(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def picture(rng: np.random.Generator, width: int, height: int, colour: int) -> Image.Image:
    """A smooth random picture (a JPEG's natural subject) tinted by ``colour``."""
    grid = rng.integers(0, 256, size=(4, 5, 3)).astype(np.float32)
    grid[..., colour] = np.maximum(grid[..., colour], 200)
    small = Image.fromarray(grid.astype(np.uint8), mode="RGB")
    return small.resize((width, height), Image.Resampling.BICUBIC)


def make_photos(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """``root/<class>/NN.jpg``: two classes of JPEGs of the SHAPES above."""
    rng = np.random.default_rng(seed)
    for colour, name in enumerate(("reds", "greens")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            width, height = SHAPES[index % len(SHAPES)]
            picture(rng, width, height, colour).save(folder / f"{index:02d}.jpg", quality=90)
    return root


def loaders(data: ImageData, **preprocess: object) -> tuple[object, object]:
    config = PreprocessConfig(**{"size": SIZE, "input": data.config.input, **preprocess})  # type: ignore[arg-type]
    return data.dataloaders(config)


def epoch(loader: object) -> list[torch.Tensor]:
    return [inputs for inputs, _ in loader]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("resize", "pad_mode"),
    [
        ("crop", "zeros"),
        ("pad", "zeros"),
        ("pad", "border"),
        ("pad", "reflection"),
        ("squish", "zeros"),
    ],
)
def test_validation_from_the_cache_equals_prepare_input(
    tmp_path: Path, resize: str, pad_mode: str
) -> None:
    folder = make_photos(tmp_path / "photos")
    data = ImageData.from_folder(folder, size=SIZE, valid_pct=0.5, num_workers=0, batch_size=4)
    config = PreprocessConfig(size=SIZE, resize=resize, pad_mode=pad_mode)  # type: ignore[arg-type]
    _, valid = data.dataloaders(config)
    assert valid.dataset.cache is not None  # type: ignore[attr-defined]
    from_cache = torch.cat(epoch(valid)).numpy()  # (N, 3, SIZE, SIZE)
    expected = np.stack([prepare_input(item.path, config) for item in data.valid_items])
    assert from_cache.shape == (len(data.valid_items), 3, SIZE, SIZE)
    np.testing.assert_allclose(from_cache, expected, atol=1e-6)


@pytest.mark.parametrize("resize", ["crop", "pad", "squish"])
def test_resizing_a_resized_image_again_changes_no_pixel(resize: str) -> None:
    # Why the cache may store the resized image: preprocess() resizes it again, as a copy.
    config = PreprocessConfig(size=SIZE, resize=resize, pad_mode="reflection")  # type: ignore[arg-type]
    once = resize_for_model(picture(np.random.default_rng(3), 77, 41, 0), config)
    assert np.array_equal(np.asarray(resize_for_model(once, config)), np.asarray(once))


def test_later_epochs_open_no_file(tmp_path: Path) -> None:
    log = tmp_path / "opened.txt"
    folder = make_photos(tmp_path / "photos")
    source = CountingInput(log=str(log))
    data = ImageData.from_folder(
        folder, size=SIZE, input=source, num_workers=2, batch_size=4, valid_pct=0.25
    )
    before = len(opened(log))
    train, valid = loaders(data)
    built = opened(log)[before:]  # the cache is built here: every file, once
    assert sorted(built) == sorted(str(i.path) for i in data.train_items + data.valid_items)
    first, second = epoch(train), epoch(train)
    epoch(valid)
    assert len(opened(log)) == before + len(built)  # two epochs and validation: no file opened
    assert len(first) == len(second) == len(data.train_items) // 4


def test_without_the_cache_every_epoch_opens_every_file(tmp_path: Path) -> None:
    log = tmp_path / "opened.txt"
    data = ImageData.from_folder(
        make_photos(tmp_path / "photos"), size=SIZE, input=CountingInput(log=str(log)),
        num_workers=0, batch_size=5, cache=False,
    )  # fmt: skip
    before = len(opened(log))
    train, _ = loaders(data)
    epoch(train)
    epoch(train)
    assert len(opened(log)) - before == 2 * len(data.train_items) == 2 * 10  # 2 batches of 5
    assert not any(Path(os.environ["URSA_CACHE_DIR"]).rglob("*.pixels"))


def test_the_cache_changes_no_training_batch(tmp_path: Path) -> None:
    folder = make_photos(tmp_path / "photos")
    batches = []
    for cache in (False, True, True):  # off, building, built
        data = ImageData.from_folder(folder, size=SIZE, num_workers=0, batch_size=4, cache=cache)
        train, _ = loaders(data)
        torch.manual_seed(0)  # the augmentation draws from torch's generator (no workers)
        batches.append(torch.cat(epoch(train)))
    assert torch.equal(batches[0], batches[1])
    assert torch.equal(batches[0], batches[2])


def test_a_changed_file_is_decoded_again_and_only_it(tmp_path: Path) -> None:
    log = tmp_path / "opened.txt"
    folder = make_photos(tmp_path / "photos")
    settings = {"size": SIZE, "input": CountingInput(log=str(log)), "num_workers": 0}
    loaders(ImageData.from_folder(folder, **settings))  # type: ignore[arg-type]
    changed = folder / "reds" / "01.jpg"
    new_picture = picture(np.random.default_rng(9), 60, 90, 1)
    new_picture.save(changed, quality=90)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))  # a visibly new mtime

    data = ImageData.from_folder(folder, **settings)  # type: ignore[arg-type]
    before = len(opened(log))
    train, valid = loaders(data)
    assert opened(log)[before:] == [str(changed)]  # the other files came from the old entry
    for dataset in (train.dataset, valid.dataset):  # type: ignore[attr-defined]
        for index in range(len(dataset.items)):
            cached = dataset.cache.array(index)
            assert np.array_equal(cached, np.asarray(dataset.decode(index)))


def test_a_changed_setting_builds_a_new_cache(tmp_path: Path) -> None:
    log = tmp_path / "opened.txt"
    folder = make_photos(tmp_path / "photos")
    source = CountingInput(log=str(log))
    data = ImageData.from_folder(folder, size=SIZE, input=source, num_workers=0)
    loaders(data)
    for change in ({"resize": "pad"}, {"interpolation": "bilinear"}, {"size": SIZE + 8}):
        before = len(opened(log))
        _, valid = loaders(data, **change)
        assert len(opened(log)) - before == len(data.train_items) + len(data.valid_items)
        side = change.get("size", SIZE)
        assert valid.dataset.cache.array(0).shape == (side, side, 3)  # type: ignore[attr-defined]
    groups = [p for p in cache_dir().iterdir() if p.is_dir()]
    assert len(groups) == 2 * 4  # (train, valid) × the four settings


def test_another_pillow_builds_a_new_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pixels depend on the decoder's and the resizer's code, not only on the settings."""
    import PIL

    log = tmp_path / "opened.txt"
    source = CountingInput(log=str(log))
    data = ImageData.from_folder(make_photos(tmp_path / "photos"), size=SIZE, input=source)
    loaders(data)
    before = len(opened(log))
    loaders(data)
    assert len(opened(log)) == before  # same code: the cache is used
    monkeypatch.setattr(PIL, "__version__", PIL.__version__ + ".another")
    loaders(data)
    assert len(opened(log)) - before == len(data.train_items) + len(data.valid_items)


def test_training_items_are_stored_larger_with_their_aspect() -> None:
    crop = PreprocessConfig(size=SIZE, resize="crop")
    form = stored_form(crop, training=True, augment="default", min_scale=0.25)
    assert form.short_side == 2 * SIZE  # size / sqrt(min_scale)
    wide = Image.new("RGB", (400, 100))
    assert form(wide).size == (256, 64)  # short side 64, aspect 4:1 kept
    assert form(Image.new("RGB", (40, 50))).size == (40, 50)  # never enlarged
    assert form(Image.new("RGB", (100, 1000))).size == (26, 256)  # a sliver: long side ≤ 4×64
    capped = stored_form(crop, training=True, min_scale=0.01)
    assert capped.short_side == 2 * SIZE  # a tiny min_scale would ask for 10×
    # Training that starts with a fixed resize stores it, exactly as validation does.
    for form in (
        stored_form(PreprocessConfig(size=SIZE, resize="pad"), training=True),
        stored_form(crop, training=True, augment="none"),
        stored_form(crop, training=False),
    ):
        assert form.short_side is None and form(wide).size == (SIZE, SIZE)


def test_an_unfinished_or_damaged_cache_is_never_read(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.png" for i in range(6)]
    rng = np.random.default_rng(0)
    for path in paths:
        picture(rng, 20, 10, 0).save(path)

    def decode(index: int) -> Image.Image:
        if index == 3:
            raise ImageError(str(paths[index]), "truncated")
        return Image.open(paths[index]).convert("RGB")

    with pytest.raises(DataError, match=r"3\.png could not be decoded .*build the ImageData again"):
        build_cache(paths, decode, {"case": 1}, name="test")
    assert list(cache_dir().rglob("*.pixels")) == []  # no entry, no temporary file left
    assert [p.name for p in cache_dir().rglob("*") if p.is_file()] == [".lock"]

    calls: list[int] = []

    def good(index: int) -> Image.Image:
        calls.append(index)
        return Image.open(paths[index]).convert("RGB")

    cache = build_cache(paths, good, {"case": 1}, name="test")
    assert cache is not None and sorted(calls) == list(range(6))
    # A damaged pixels file (here cut short) is noticed and the entry is built again.
    with open(cache.path, "r+b") as stream:
        stream.truncate(cache.path.stat().st_size - 1)
    again = build_cache(paths, good, {"case": 1}, name="test")
    assert again is not None and len(calls) == 12
    assert np.array_equal(again.array(5), np.asarray(Image.open(paths[5]).convert("RGB")))
    # An index of another format version is ignored too.
    index = next(cache_dir().rglob("*.json"))
    values = json.loads(index.read_text())
    index.write_text(json.dumps({**values, "format": CACHE_FORMAT + 1}))
    assert build_cache(paths, good, {"case": 1}, name="test") is not None and len(calls) == 18


def _build_in_process(paths: list[Path], log: str) -> None:
    def decode(index: int) -> Image.Image:
        with open(log, "a", encoding="utf-8") as stream:
            stream.write(f"{index}\n")
        time.sleep(0.05)  # slow enough that the two builds overlap
        return Image.open(paths[index]).convert("RGB")

    cache = build_cache(paths, decode, {"case": "race"}, name="race", threads=1)
    assert cache is not None and len(cache) == len(paths)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_two_processes_building_at_once_build_once(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.png" for i in range(10)]
    rng = np.random.default_rng(0)
    for path in paths:
        picture(rng, 24, 16, 2).save(path)
    log = tmp_path / "decoded.txt"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_build_in_process, args=(paths, str(log))) for _ in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert sorted(int(line) for line in opened(log)) == list(range(10))  # one build, not two
    cache = build_cache(paths, lambda i: Image.new("RGB", (1, 1)), {"case": "race"}, name="race")
    assert cache is not None
    assert np.array_equal(cache.array(7), np.asarray(Image.open(paths[7]).convert("RGB")))


def test_old_entries_are_pruned(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for version in range(5):
        for path in paths:
            Image.new("RGB", (8, 8), (version, 0, 0)).save(path)
            os.utime(path, ns=(0, version * 10**9))
        build_cache(paths, lambda i: Image.open(paths[i]).convert("RGB"), {}, name="prune")
    (group,) = [p for p in cache_dir().iterdir() if p.is_dir()]
    assert len(list(group.glob("*.json"))) == len(list(group.glob("*.pixels"))) == 3


def test_a_worker_maps_the_file_itself(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.png" for i in range(4)]
    for i, path in enumerate(paths):
        Image.new("RGB", (64, 64), (i, 0, 0)).save(path)
    cache = build_cache(paths, lambda i: Image.open(paths[i]).convert("RGB"), {}, name="pickle")
    assert cache is not None
    payload = pickle.dumps(cache)
    assert len(payload) < 64 * 64 * 3  # the pixels are not in it
    copy: DecodeCache = pickle.loads(payload)
    assert copy.array(2)[0, 0].tolist() == [2, 0, 0]


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URSA_CACHE_DIR", "/somewhere/ursa")
    assert cache_dir() == Path("/somewhere/ursa/decoded")
    monkeypatch.delenv("URSA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert cache_dir() == Path("/xdg/ursa/decoded")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/someone")
    assert cache_dir() == Path("/home/someone/.cache/ursa/decoded")


def test_an_unwritable_cache_folder_means_no_cache_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("URSA_CACHE_DIR", str(blocker))
    data = ImageData.from_folder(make_photos(tmp_path / "photos"), size=SIZE, num_workers=0)
    train, _ = loaders(data)
    assert train.dataset.cache is None  # type: ignore[attr-defined]
    assert "decode cache off" in caplog.text and "URSA_CACHE_DIR" in caplog.text
    assert len(epoch(train)) >= 1


def test_clear_cache_and_the_setting(tmp_path: Path) -> None:
    loaders(ImageData.from_folder(make_photos(tmp_path / "photos"), size=SIZE, num_workers=0))
    assert clear_cache() > 0
    assert not cache_dir().exists()
    assert clear_cache() == 0
    with pytest.raises(ConfigError, match=r"cache='yes': use True or False"):
        ImageData.from_folder(tmp_path / "photos", cache="yes")  # type: ignore[arg-type]


def test_the_cache_key_follows_the_pixel_code_and_fails_loudly_when_a_module_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key hashes the decoding modules by import name: a moved or renamed module is an
    ImportError, never silently left out of the key (stale pixels)."""
    from ursa.data import cache

    key = cache._pixel_code_versions()["ursa_pixel_code"]
    monkeypatch.setattr(cache, "_PIXEL_CODE", cache._PIXEL_CODE[:-1])
    assert cache._pixel_code_versions()["ursa_pixel_code"] != key  # each module counts
    monkeypatch.setattr(cache, "_PIXEL_CODE", (*cache._PIXEL_CODE, "ursa.data.moved_away"))
    with pytest.raises(ImportError):
        cache._pixel_code_versions()
