"""The perceptual hash: copies stay close, different pictures stay apart."""

from __future__ import annotations

import io
import itertools

import numpy as np
from PIL import Image

from tests.gather.fakeweb import encode, near_copy, structured_image
from ursa.core import hashing


def test_dct_matrix_is_orthonormal() -> None:
    d = hashing._dct_matrix(32)
    assert np.allclose(d @ d.T, np.eye(32))


def test_copies_are_near_and_different_pictures_far() -> None:
    rng = np.random.default_rng(0)
    pictures = [structured_image(rng, 128) for _ in range(40)]
    hashes = [hashing.phash(p) for p in pictures]
    for picture, value in zip(pictures[:10], hashes, strict=False):
        copy = Image.open(io.BytesIO(near_copy(picture)))
        assert hashing.hamming(hashing.phash(copy), value) <= 4
        brighter = Image.eval(picture, lambda v: min(255, v + 20))
        assert hashing.hamming(hashing.phash(brighter), value) <= 6
        grey_png = Image.open(io.BytesIO(encode(picture.convert("L"), "PNG")))
        assert hashing.hamming(hashing.phash(grey_png), value) <= 4
    distances = [hashing.hamming(a, b) for a, b in itertools.combinations(hashes, 2)]
    assert min(distances) > 12 and 24 < np.mean(distances) < 40


def test_near_pairs_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    values = [int(v) for v in rng.integers(0, 2**63, size=300, dtype=np.int64)]
    values += [v ^ 0b1011 for v in values[:20]]  # 3 bits away from an earlier one
    fast = set(hashing.near_pairs(values, 5))
    slow = {
        (i, j, hashing.hamming(a, b))
        for (i, a), (j, b) in itertools.combinations(enumerate(values), 2)
        if hashing.hamming(a, b) <= 5
    }
    assert fast == slow and len(fast) >= 20
    assert hashing.nearest(values[3] ^ 1, values) == (3, 1)
    assert hashing.from_hex(hashing.to_hex(values[0])) == values[0]
    top = (1 << 64) - 1
    assert hashing.near_pairs([top, top ^ 1], 1) == [(0, 1, 1)]
