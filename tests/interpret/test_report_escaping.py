"""The model card is a Jinja2 template with autoescaping: text from the dataset (file names,
a shared manifest's creators and licences) is shown as text, never run as markup."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from tests.interpret.conftest import Trained
from ursa.core.manifest import Manifest
from ursa.interpret import Interpretation

EVIL = "<script>alert(\"card\")</script> & 'co'"
EVIL_FILE = "train/red/<img src=x onerror=alert(1)>.png"


def test_text_from_the_files_and_the_manifest_is_escaped(trained: Trained, tmp_path: Path) -> None:
    root = Path(shutil.copytree(trained.root, tmp_path / "colours"))
    shutil.copyfile(root / "train/red/01.png", root / EVIL_FILE)
    with Manifest(root) as manifest:
        record = manifest.get("train/red/00.png")
        assert record is not None
        manifest.put(replace(record, creator=EVIL, license=EVIL))
        manifest.put(replace(record, path=EVIL_FILE))
    bundle = trained.learner.export(tmp_path / "model.ursa")
    page = Interpretation.from_bundle(bundle, root).report(tmp_path / "card.html", k=3).read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert page.count("<img ") == 5  # the figures only
    assert "&lt;script&gt;alert(&#34;card&#34;)&lt;/script&gt; &amp; &#39;co&#39;" in page
    assert "train/red/&lt;img src=x onerror=alert(1)&gt;.png" in page
