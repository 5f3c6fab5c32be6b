"""ursa's perceptual hash against ImageHash's ``phash``: time per image and what each tells apart.

    .venv/bin/pip install imagehash          # not a dependency of ursa: for this comparison
    .venv/bin/python benchmarks/phash.py [--pictures 40] [--repeat 20]

Pictures: scikit-image's sample photographs (a dev dependency), and crops of them, as
already decoded PIL images. Speed: the best of ``--repeat`` runs of hashing one
640×480 picture and one 4000×3000 (12 MP) picture, the sizes of a web photo and of a
phone photo. What they tell apart: the Hamming distance (of 64 bits) between a picture
and its JPEG re-encoding at quality 60, its half-size copy and a 5 % crop, against the
distance between different pictures; ``verify`` calls a pair near-duplicates at 10 bits
or fewer (``VerifyConfig.near_threshold``). Prints JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from ursa.core.hashing import hamming, phash

NEAR = 10


def sample_pictures(count: int) -> list[Image.Image]:
    """scikit-image's colour photographs, then crops of them, ``count`` in all."""
    from skimage import data

    names = (
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
    )
    photos = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in names]
    pictures = list(photos)
    rng = np.random.default_rng(0)
    while len(pictures) < count:
        photo = photos[len(pictures) % len(photos)]
        side = int(rng.integers(photo.width // 3, photo.width // 2))
        left = int(rng.integers(0, photo.width - side))
        top = int(rng.integers(0, photo.height - min(side, photo.height - 1)))
        box = (left, top, left + side, min(photo.height, top + side))
        pictures.append(photo.crop(box).resize((480, 480), Image.Resampling.BICUBIC))
    return pictures[:count]


def variants(picture: Image.Image) -> dict[str, Image.Image]:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=60)
    width, height = picture.size
    margin_x, margin_y = width // 40, height // 40
    return {
        "jpeg q60": Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
        "half size": picture.resize((width // 2, height // 2), Image.Resampling.BILINEAR),
        "5 % crop": picture.crop((margin_x, margin_y, width - margin_x, height - margin_y)),
    }


def best_time(
    function: Callable[[Image.Image], object], picture: Image.Image, repeat: int
) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(picture)
        times.append(time.perf_counter() - start)
    return min(times)


def compare(name: str, hash_of: Callable[[Image.Image], int], pictures: list[Image.Image],
            repeat: int) -> dict[str, object]:  # fmt: skip
    hashes = [hash_of(p) for p in pictures]
    copies: dict[str, list[int]] = {}
    for picture, value in zip(pictures, hashes, strict=True):
        for kind, copy in variants(picture).items():
            copies.setdefault(kind, []).append(hamming(value, hash_of(copy)))
    different = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    rng = np.random.default_rng(1)
    web = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    phone = pictures[0].resize((4000, 3000), Image.Resampling.BICUBIC)
    return {
        "hash": name,
        "ms_640x480": round(best_time(hash_of, web, repeat) * 1e3, 2),
        "ms_4000x3000": round(best_time(hash_of, phone, repeat) * 1e3, 1),
        "copies_mean_bits": {k: round(float(np.mean(v)), 1) for k, v in copies.items()},
        "copies_found": {k: f"{sum(d <= NEAR for d in v)}/{len(v)}" for k, v in copies.items()},
        "different_pairs": len(different),
        "different_min_bits": min(different),
        "different_mean_bits": round(float(np.mean(different)), 1),
        "different_called_near": sum(d <= NEAR for d in different),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    import imagehash

    pictures = sample_pictures(args.pictures)
    rows = [
        compare("ursa.core.hashing.phash", phash, pictures, args.repeat),
        compare(
            "imagehash.phash", lambda p: int(str(imagehash.phash(p)), 16), pictures, args.repeat
        ),
    ]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(json.dumps({
        "machine": machine,
        "imagehash": imagehash.__version__,
        "pictures": len(pictures),
        "results": rows,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
