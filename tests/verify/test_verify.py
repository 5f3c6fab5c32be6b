"""``ursa verify``: broken files, duplicates, near-duplicates, leaks; --fix and --restore."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.gather.fakeweb import FakeWeb, Resource, bomb_png, encode, near_copy, structured_image
from ursa.cli import app
from ursa.core.errors import ConfigError, DataError
from ursa.core.items import items_from_class_folders
from ursa.core.manifest import LOCK_NAME, QUARANTINE_DIR, Manifest
from ursa.gather.download import DownloadConfig, GatherConfig, gather
from ursa.gather.search import OpenverseProvider
from ursa.verify.checks import VerifyConfig, fix, forget, restore, verify_folder

runner = CliRunner()


def snapshot(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file except the manifest and the folder's lock."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("ursa.sqlite") and p.name != LOCK_NAME
    }


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A train/valid split with every kind of problem planted once."""
    rng = np.random.default_rng(3)
    root = tmp_path / "bears"
    images: dict[str, list[bytes]] = {}
    for split, count in (("train", 6), ("valid", 2)):
        for label in ("grizzly", "black"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                body = encode(structured_image(rng), "JPEG", quality=90)
                (folder / f"{index}.jpg").write_bytes(body)
                images.setdefault(f"{split}/{label}", []).append(body)
    train_g, train_b = root / "train" / "grizzly", root / "train" / "black"
    picture = structured_image(np.random.default_rng(99))
    (train_g / "p.png").write_bytes(encode(picture, "PNG"))
    (train_g / "dup.jpg").write_bytes(images["train/grizzly"][0])  # exact, same class
    (train_b / "near.jpg").write_bytes(near_copy(picture))  # near, other class
    (train_g / "near-same.jpg").write_bytes(near_copy(structured_image(np.random.default_rng(5))))
    (train_g / "near-orig.png").write_bytes(
        encode(structured_image(np.random.default_rng(5)), "PNG")
    )
    (root / "valid" / "grizzly" / "leak.jpg").write_bytes(images["train/grizzly"][1])  # exact
    leak_source = decoded(images["train/black"][2])
    (root / "valid" / "black" / "leak-near.jpg").write_bytes(near_copy(leak_source))
    (train_b / "cross.jpg").write_bytes(images["train/grizzly"][2])  # exact, other class
    good = images["train/grizzly"][3]
    (train_g / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (train_g / "empty.jpg").write_bytes(b"")
    (train_b / "notes.jpg").write_text("not an image")
    (train_b / "tiny.png").write_bytes(encode(structured_image(rng, 10), "PNG"))
    (train_b / "bomb.png").write_bytes(bomb_png())
    return root


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


EXPECTED = {
    ("duplicate", "train/grizzly/dup.jpg", "train/grizzly/0.jpg"),
    ("near-duplicate", "train/grizzly/near-same.jpg", "train/grizzly/near-orig.png"),
    ("leak", "valid/grizzly/leak.jpg", "train/grizzly/1.jpg"),
    ("leak", "valid/black/leak-near.jpg", "train/black/2.jpg"),
    ("cross-class near-duplicate", "train/grizzly/p.png", "train/black/near.jpg"),
    ("cross-class duplicate", "train/grizzly/2.jpg", "train/black/cross.jpg"),
    ("unreadable", "train/grizzly/truncated.jpg", ""),
    ("unreadable", "train/grizzly/empty.jpg", ""),
    ("unreadable", "train/black/notes.jpg", ""),
    ("unreadable", "train/black/bomb.png", ""),
    ("too-small", "train/black/tiny.png", ""),
}


def test_verify_finds_every_planted_problem(planted: Path) -> None:
    report = verify_folder(planted, VerifyConfig(workers=2))
    found = {(f.kind, f.path, f.other) for f in report.findings}
    # Cross-class pairs are reported from either side; normalise to compare.
    normal = {(k, *sorted((p, o))) if k.startswith("cross") else (k, p, o) for k, p, o in found}
    expected = {
        (k, *sorted((p, o))) if k.startswith("cross") else (k, p, o) for k, p, o in EXPECTED
    }
    assert normal == expected
    actions = {f.path: f.action for f in report.findings}
    assert actions["train/grizzly/dup.jpg"] == "quarantine"
    assert actions["valid/grizzly/leak.jpg"] == "quarantine"
    assert all(f.action == "flag" for f in report.findings if f.kind.startswith("cross"))
    assert report.checked == 29
    with Manifest(planted) as manifest:
        rows = {r.path: r for r in manifest.records()}
    assert len(rows) == 29
    assert rows["train/black/bomb.png"].status == "rejected"
    assert "pixels" in rows["train/black/bomb.png"].reason
    assert rows["valid/black/0.jpg"].split == "valid" and rows["valid/black/0.jpg"].phash


def test_fix_then_restore_returns_the_folder_byte_for_byte(planted: Path) -> None:
    before = snapshot(planted)
    result = runner.invoke(app, ["verify", str(planted), "--fix"])
    assert result.exit_code == 0, result.output
    for kind in ("leak", "near-duplicate", "cross-class duplicate", "unreadable", "too-small"):
        assert kind in result.output
    moved = snapshot(planted)
    quarantined = {p for p in moved if p.startswith(QUARANTINE_DIR)}
    assert len(quarantined) == 9  # every "quarantine" finding; cross-class ones only flagged
    assert f"{QUARANTINE_DIR}/valid/grizzly/leak.jpg" in quarantined
    assert moved[f"{QUARANTINE_DIR}/valid/grizzly/leak.jpg"] == before["valid/grizzly/leak.jpg"]
    # Training never sees the quarantine folder.
    labels = {i.path.name for i in items_from_class_folders(planted / "valid")}
    assert "leak.jpg" not in labels
    with Manifest(planted) as manifest:
        row = manifest.get("valid/grizzly/leak.jpg")
    assert row is not None and row.status == "rejected" and row.reason.startswith("leak")
    again = verify_folder(planted)
    assert all(f.kind.startswith("cross") for f in again.findings)

    result = runner.invoke(app, ["verify", str(planted), "--restore"])
    assert result.exit_code == 0, result.output
    assert "restored 9 file(s)" in result.output
    assert snapshot(planted) == before
    assert not (planted / QUARANTINE_DIR).exists()


def test_restore_refuses_to_overwrite(planted: Path) -> None:
    report = verify_folder(planted)
    fix(report)
    (planted / "train/grizzly/dup.jpg").write_bytes(b"someone put a file here")
    with pytest.raises(DataError, match=r"dup\.jpg"):
        restore(planted)
    assert (planted / "train/grizzly/dup.jpg").read_bytes() == b"someone put a file here"
    assert (planted / "valid/grizzly/leak.jpg").is_file()  # the others came back


def test_verify_cli_errors_and_settings(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "is not a folder" in result.output
    with pytest.raises(ConfigError, match="near_threshold"):
        VerifyConfig(near_threshold=99)
    result = runner.invoke(app, ["verify", str(tmp_path), "--restore"])
    assert result.exit_code == 1 and "no manifest" in result.output


def test_forget_removes_copies_and_gather_never_fetches_it_again(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    root = tmp_path / "bears"
    person = structured_image(rng)
    with FakeWeb() as web:
        web.add("/me.jpg", Resource(encode(person, "JPEG")))
        web.add_result("grizzly", "/me.jpg")
        for index in range(3):
            web.add(f"/{index}.jpg", Resource(encode(structured_image(rng), "JPEG")))
            web.add_result("grizzly", f"/{index}.jpg")
        config = DownloadConfig(allow_hosts=(web.host,), timeout=2, retries=0)
        gather(root, GatherConfig(("grizzly",), per_class=10), OpenverseProvider(web.base), config)
        assert len(list((root / "grizzly").iterdir())) == 4
        # A copy the user put in by hand under another class.
        (root / "black").mkdir()
        (root / "black" / "copy.png").write_bytes(encode(person, "PNG"))

        result = runner.invoke(app, ["forget", str(root), web.url("/me.jpg")])
        assert result.exit_code == 0, result.output
        assert "removed grizzly/" in result.output and "removed black/copy.png" in result.output
        assert len(list((root / "grizzly").iterdir())) == 3
        assert not (root / "black" / "copy.png").exists()
        with Manifest(root) as manifest:
            assert not manifest.find(source_url=web.url("/me.jpg"))

        # Later: the same photo, re-encoded, at another URL, and the old URL again.
        web.add("/again.jpg", Resource(near_copy(person)))
        web.add_result("grizzly", "/again.jpg")
        hits = web.hits["/me.jpg"]
        report = gather(
            root, GatherConfig(("grizzly",), per_class=10), OpenverseProvider(web.base), config
        )
        assert web.hits["/me.jpg"] == hits  # the forgotten URL is not even fetched
    assert report.outcomes["forgotten"] == 2
    assert len(list((root / "grizzly").iterdir())) == 3


def test_forget_by_sha256_and_bad_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for index in range(2):
            (tmp_path / label / f"{index}.png").write_bytes(encode(structured_image(rng), "PNG"))
    digest = snapshot(tmp_path)["a/1.png"]
    report = forget(tmp_path, digest[:16])
    assert report.removed == ["a/1.png"]
    with Manifest(tmp_path) as manifest:
        assert digest in manifest.forgotten("sha256")
    with pytest.raises(DataError, match="neither a URL nor a sha256"):
        forget(tmp_path, "hello")
    result = runner.invoke(app, ["forget", str(tmp_path), "0" * 64])
    assert result.exit_code == 0 and "recorded so gather never saves it" in result.output
