"""Loader throughput, decode cache on and off: images/s in the first epoch and in later ones.

    .venv/bin/python benchmarks/loader.py --workdir /tmp/ursa-loader-bench \
        [--photos 2000] [--photo-size 2048x1536] [--size 224] \
        [--mnist 70000] [--mnist-size 64] [--epochs 3] [--only photos|mnist]

Two datasets, written into ``--workdir`` once and reused by later runs:

* ``photos/``: PHOTOS generated JPEGs (PHOTO-SIZE, landscape and portrait, a
  fifth with an EXIF rotation): a smooth random background, a few filled
  shapes, sensor-like noise; four classes by the kind of shape;
* ``fashion-mnist/``: the 70,000 images of Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``, the idx files) as PNG class folders.

For each dataset and each of cache off / on, an ``ImageData`` is made with the
default settings (80/20 split, augmentation ``default``, default loader
workers) and the data side of EPOCHS epochs is timed with no model: an epoch
is one pass over the training loader (the real augmentation) and one over the
validation loader. With the cache on, the first epoch includes building it
(``dataloaders()`` decodes every file once; the cache folder is emptied
before). Scanning the folder (``from_folder``) is timed separately. Prints a
table and one JSON line; the load average is printed too, because a shared
machine makes the times noisy.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import multiprocessing
import os
import platform
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from ursa.core.preprocess import PreprocessConfig
from ursa.data.cache import clear_cache
from ursa.data.core import ImageData
from ursa.data.loaders import default_num_workers

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip
SHAPES = ("circles", "squares", "stripes", "triangles")


# -- the photos ---------------------------------------------------------------------------


_NOISE: dict[int, Image.Image] = {}


def noise_field(width: int, height: int) -> Image.Image:
    """Gaussian noise (sigma 6 around 128), made once per process and size."""
    side = max(width, height) + 256
    if side not in _NOISE:
        rng = np.random.default_rng(12345)
        values = np.clip(rng.normal(128.0, 6.0, size=(side, side, 3)), 0, 255)
        _NOISE[side] = Image.fromarray(values.astype(np.uint8), mode="RGB")
    return _NOISE[side]


def photo(index: int, width: int, height: int) -> bytes:
    """One synthetic photo as JPEG bytes: background gradient, shapes of one kind, noise."""
    rng = np.random.default_rng(index)
    if index % 3 == 1:  # portrait
        width, height = height, width
    grid = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    image = Image.fromarray(grid, mode="RGB").resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    kind = SHAPES[index % len(SHAPES)]
    for _ in range(int(rng.integers(3, 8))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(min(width, height) // 20, min(width, height) // 4))
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if kind == "circles":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif kind == "squares":
            draw.rectangle((x - r, y - r, x + r, y + r), fill=fill)
        elif kind == "stripes":
            draw.rectangle((x - r, 0, x + r // 3, height), fill=fill)
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    field = noise_field(width, height)  # sensor-like noise: a random window of a fixed field
    dx, dy = (int(v) for v in rng.integers(0, 256, size=2))
    image = ImageChops.add(image, field.crop((dx, dy, dx + width, dy + height)), offset=-128)
    exif = Image.Exif()
    if index % 5 == 4:
        exif[0x0112] = 6  # stored sideways; opening turns it the right way up
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def _write_photo(job: tuple[Path, int, int, int]) -> None:
    folder, index, width, height = job
    kind = SHAPES[index % len(SHAPES)]
    (folder / kind / f"{index:05d}.jpg").write_bytes(photo(index, width, height))


def make_photos(folder: Path, count: int, width: int, height: int) -> float:
    """Write the photos unless a finished set is there; returns the seconds spent."""
    done = folder / ".complete"
    if done.exists() and done.read_text() == f"{count} {width}x{height}":
        return 0.0
    start = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    for kind in SHAPES:
        (folder / kind).mkdir(parents=True)
    jobs = [(folder, index, width, height) for index in range(count)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        pool.map(_write_photo, jobs, chunksize=8)
    done.write_text(f"{count} {width}x{height}")
    return time.perf_counter() - start


# -- Fashion-MNIST --------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip) as a numpy array: a 4-byte magic (type, rank), the sizes, the data."""
    data = gzip.decompress(path.read_bytes())
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


def make_fashion_mnist(folder: Path, count: int) -> float:
    """Write the first ``count`` Fashion-MNIST images (training set, then test set) as PNGs."""
    done = folder / ".complete"
    if done.exists() and done.read_text() == str(count):
        return 0.0
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        raise SystemExit(
            f"{FASHION_MNIST} has no Fashion-MNIST: apt-get install dataset-fashion-mnist, "
            f"or pass --only photos"
        )
    start = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    images = np.concatenate(
        [read_idx(FASHION_MNIST / f"{s}-images-idx3-ubyte.gz") for s in ("train", "t10k")]
    )
    labels = np.concatenate(
        [read_idx(FASHION_MNIST / f"{s}-labels-idx1-ubyte.gz") for s in ("train", "t10k")]
    )
    for name in FASHION_CLASSES:
        (folder / name).mkdir(parents=True)
    for index in range(min(count, len(images))):
        path = folder / FASHION_CLASSES[labels[index]] / f"{index:05d}.png"
        Image.fromarray(images[index], mode="L").save(path, compress_level=1)
    done.write_text(str(count))
    return time.perf_counter() - start


# -- timing -------------------------------------------------------------------------------


def one_epoch(loaders: tuple[Any, Any]) -> int:
    """Every batch of the training loader, then of the validation loader; images seen."""
    seen = 0
    for loader in loaders:
        for inputs, _ in loader:
            seen += len(inputs)  # (B, 3, size, size)
    return seen


def run(folder: Path, size: int, epochs: int, cache: bool) -> dict[str, Any]:
    start = time.perf_counter()
    data = ImageData.from_folder(folder, size=size, cache=cache)
    scan = time.perf_counter() - start
    preprocess = PreprocessConfig(size=size)  # the defaults a Learner uses for EfficientNet-Lite
    rates = []
    for number in range(epochs):
        start = time.perf_counter()
        if number == 0:
            clear_cache()
            loaders = data.dataloaders(preprocess)  # with the cache on: decodes every file
        seen = one_epoch(loaders)
        rates.append(seen / (time.perf_counter() - start))
    cache_bytes = sum(p.stat().st_size for p in Path(os.environ["URSA_CACHE_DIR"]).rglob("*"))
    return {
        "images": len(data.train_items) + len(data.valid_items),
        "scan_s": round(scan, 1),
        "first": round(rates[0], 1),
        "later": round(float(np.median(rates[1:])), 1) if epochs > 1 else None,
        "epochs": [round(r, 1) for r in rates],
        "cache_mb": round(cache_bytes / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="datasets and cache go here")
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--photo-size", default="2048x1536", help="WIDTHxHEIGHT of the JPEGs")
    parser.add_argument("--size", type=int, default=224, help="model input side for the photos")
    parser.add_argument("--mnist", type=int, default=70_000, help="Fashion-MNIST images to use")
    parser.add_argument("--mnist-size", type=int, default=64, help="model input side for them")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (first + later)")
    parser.add_argument("--only", choices=("photos", "mnist"))
    args = parser.parse_args()
    workdir = args.workdir.expanduser().resolve()
    os.environ["URSA_CACHE_DIR"] = str(workdir / "cache")
    width, height = (int(v) for v in args.photo_size.lower().split("x"))

    sets = []
    if args.only != "mnist":
        seconds = make_photos(workdir / "photos", args.photos, width, height)
        label = f"{args.photos} JPEGs {width}×{height}"
        sets.append(("photos", workdir / "photos", args.size, label, seconds))
    if args.only != "photos":
        seconds = make_fashion_mnist(workdir / "fashion-mnist", args.mnist)
        label = f"{args.mnist} Fashion-MNIST PNGs 28×28"
        sets.append(("mnist", workdir / "fashion-mnist", args.mnist_size, label, seconds))

    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for key, folder, size, label, seconds in sets:
        for cache in (False, True):
            result = run(folder, size, args.epochs, cache)
            result.update(label=label, size=size, written_s=round(seconds, 1))
            results[f"{key}_cache_{'on' if cache else 'off'}"] = result
    load_after = os.getloadavg()

    print(f"{'data':<44} {'cache':<5} {'first epoch':>12} {'later epochs':>13} {'ratio':>6}")
    for name, result in results.items():
        later = result["later"]
        ratio = f"{later / result['first']:.1f}×" if later else "-"
        data = f"{result['label']} @ {result['size']} px"
        cache = name.rsplit("_", 1)[1]
        print(f"{data:<44} {cache:<5} {result['first']:>8} im/s {later or '-':>9} im/s {ratio:>6}")
    results["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loader_workers": default_num_workers(),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in load_after],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_children_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
