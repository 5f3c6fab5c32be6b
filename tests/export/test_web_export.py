"""``ursa export --web``: what the site holds and where each file comes from, the runtime
lookup, precision choice, and the atomic, careful writing of the folder (no browser here)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import zipfile
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ursa.cli import app
from ursa.core.bundle import read_bundle, write_bundle
from ursa.core.errors import BundleError, ConfigError
from ursa.export import web
from ursa.export.web import (
    MANIFEST_NAME,
    ORT_WEB_ENV,
    ORT_WEB_VERSION,
    RUNTIME_FILES,
    SHARED_FILES,
    SITE_FILES,
    WebExportError,
    export_web,
    find_runtime,
    model_config,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in onnxruntime-web dist/ (the real one is 14 MB): three small files."""
    folder = tmp_path / "ort-dist"
    folder.mkdir()
    for name in RUNTIME_FILES:
        header = f"/*!\n * ONNX Runtime Web v{ORT_WEB_VERSION}\n */\n// {name}\n"
        (folder / name).write_bytes(header.encode() + bytes(range(256)))
    monkeypatch.setenv(ORT_WEB_ENV, str(folder))
    return folder


@pytest.fixture
def bundle(tiny_served: tuple[Path, Path]) -> Path:
    """The tiny bundle (model.onnx and model.int8.onnx); not modified by these tests."""
    return tiny_served[0]


def _without(source: Path, target: Path, *members: str) -> Path:
    """A copy of ``source`` without ``members``."""
    opened = read_bundle(source)
    with zipfile.ZipFile(source) as archive:
        extra = {
            n: archive.read(n) for n in opened.members if n.endswith(".onnx") and n not in members
        }
        weights = archive.read("model.safetensors")
    return write_bundle(target, opened.config, weights, opened.metrics, extra=extra)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_every_file_comes_from_the_bundle_ursa_or_the_local_runtime(
    bundle: Path, fake_runtime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any attempt to reach the network during the export fails the test.
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the web export opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    site = tmp_path / "site"
    result = export_web(bundle, site)
    assert result.model == "model.int8.onnx" and result.precision == "int8"

    opened = read_bundle(bundle)
    pages = resources.files("ursa.export").joinpath("web_site")
    expected: dict[str, bytes] = {name: pages.joinpath(name).read_bytes() for name in SITE_FILES}
    package = resources.files("ursa")
    expected |= {name: package.joinpath(path).read_bytes() for name, path in SHARED_FILES.items()}
    expected |= {f"runtime/{n}": (fake_runtime / n).read_bytes() for n in RUNTIME_FILES}
    expected["model/model.int8.onnx"] = opened.read("model.int8.onnx")
    config = model_config(opened, "model.int8.onnx", opened.read("model.int8.onnx"))
    expected["model/config.json"] = (json.dumps(config, indent=2) + "\n").encode()
    written = _files(site)
    manifest = json.loads(written.pop(MANIFEST_NAME))
    assert written == expected  # nothing more, nothing less, byte for byte
    assert result.files == len(expected) + 1
    assert set(manifest["files"]) == set(expected)
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256(expected[name]).hexdigest()
        assert entry["bytes"] == len(expected[name])
        assert entry["source"].split(":")[0] in {"ursa", "onnxruntime-web", "bundle", "generated"}
    # Only relative names: the site can move to any host.
    for text in (json.dumps(manifest), expected["model/config.json"].decode()):
        assert str(tmp_path) not in text and str(Path.home()) not in text
    assert config["class_names"] == opened.config.class_names
    assert config["preprocess"]["size"] == opened.config.preprocess.size
    assert result.total_bytes == sum(len(data) for data in expected.values())


def test_precision_auto_takes_int8_and_fp32_on_request(
    bundle: Path, fake_runtime: Path, tmp_path: Path
) -> None:
    fp32 = export_web(bundle, tmp_path / "fp32", precision="fp32")
    assert fp32.model == "model.onnx"
    assert (tmp_path / "fp32" / "model" / "model.onnx").read_bytes() == read_bundle(bundle).read(
        "model.onnx"
    )
    assert not (tmp_path / "fp32" / "model" / "model.int8.onnx").exists()
    only_fp32 = _without(bundle, tmp_path / "fp32.ursa", "model.int8.onnx")
    assert export_web(only_fp32, tmp_path / "auto").model == "model.onnx"
    with pytest.raises(BundleError, match=r"no model\.int8\.onnx.*--precision fp32"):
        export_web(only_fp32, tmp_path / "int8", precision="int8")
    bare = _without(bundle, tmp_path / "bare.ursa", "model.onnx", "model.int8.onnx")
    with pytest.raises(BundleError, match=r"no model\.onnx: add --onnx"):
        export_web(bare, tmp_path / "bare")
    with pytest.raises(ConfigError, match="use one of auto, fp32, int8"):
        export_web(bundle, tmp_path / "x", precision="fp16")
    assert not (tmp_path / "int8").exists() and not (tmp_path / "bare").exists()


def test_a_non_empty_folder_is_refused_without_force(
    bundle: Path, fake_runtime: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "notes.txt").write_text("mine")
    with pytest.raises(WebExportError, match="not empty"):
        export_web(bundle, site)
    # --force replaces only a previous export: a folder of someone's files stays as it is.
    with pytest.raises(WebExportError, match="not a previous ursa web export"):
        export_web(bundle, site, force=True)
    assert _files(site) == {"notes.txt": b"mine"}
    (site / "notes.txt").unlink()
    export_web(bundle, site)  # an empty folder is fine
    assert (site / "index.html").is_file()
    with pytest.raises(WebExportError, match="previous export: --force replaces it"):
        export_web(bundle, site)
    file_target = tmp_path / "file"
    file_target.write_text("x")
    with pytest.raises(WebExportError, match="not a folder"):
        export_web(bundle, file_target)


def test_force_replaces_a_previous_export_and_keeps_your_files(
    bundle: Path, fake_runtime: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    export_web(bundle, site)
    (site / "CNAME").write_text("bears.example.org\n")  # files of yours, beside ursa's
    (site / "extra").mkdir()
    (site / "extra" / "about.html").write_text("<p>about</p>")
    (site / "model" / "notes.txt").write_text("model notes")
    result = export_web(bundle, site, precision="fp32", force=True)
    assert sorted(result.kept) == ["CNAME", "extra", "model/notes.txt"]
    assert (site / "CNAME").read_text() == "bears.example.org\n"
    assert (site / "extra" / "about.html").read_text() == "<p>about</p>"
    assert (site / "model" / "notes.txt").read_text() == "model notes"
    assert (site / "model" / "model.onnx").is_file()
    assert not (site / "model" / "model.int8.onnx").exists()  # the old export's file is gone
    assert json.loads((site / MANIFEST_NAME).read_text())["model"] == "model.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ort-dist", "site"]  # no leftovers

    (site / "index.html").write_text("<p>edited by hand</p>")
    with pytest.raises(WebExportError, match=r"index\.html was changed after ursa wrote it"):
        export_web(bundle, site, force=True)
    assert (site / "index.html").read_text() == "<p>edited by hand</p>"


def test_the_export_is_atomic(
    bundle: Path, fake_runtime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    real_copy = web.shutil.copyfile
    calls = {"n": 0}

    def failing_copy(source: Any, target: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_copy(source, target)

    monkeypatch.setattr(web.shutil, "copyfile", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        export_web(bundle, site)
    assert not site.exists()  # no half-written site, under its name or beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ort-dist"]

    monkeypatch.setattr(web.shutil, "copyfile", real_copy)
    export_web(bundle, site)
    before = _files(site)
    calls["n"] = 0
    monkeypatch.setattr(web.shutil, "copyfile", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        export_web(bundle, site, precision="fp32", force=True)
    assert _files(site) == before  # the previous export is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ort-dist", "site"]

    # A failure at the very end (the new site renamed into place) puts the old one back,
    # with your files in it.
    monkeypatch.setattr(web.shutil, "copyfile", real_copy)
    (site / "CNAME").write_text("bears.example.org\n")
    before = _files(site)
    real_rename = web.os.rename

    def failing_rename(source: Any, target: Any) -> None:
        if ".partial-" in str(source) and Path(target) == site:
            raise OSError("rename refused")
        real_rename(source, target)

    monkeypatch.setattr(web.os, "rename", failing_rename)
    with pytest.raises(WebExportError, match="rename refused"):
        export_web(bundle, site, precision="fp32", force=True)
    assert _files(site) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ort-dist", "site"]


def test_a_missing_or_other_runtime_is_refused_with_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(ORT_WEB_ENV, str(empty))
    with pytest.raises(WebExportError) as caught:
        find_runtime()
    message = str(caught.value)
    assert "npm ci" in message and f"npm install onnxruntime-web@{ORT_WEB_VERSION}" in message
    assert ORT_WEB_ENV in message
    for name in RUNTIME_FILES:
        (empty / name).write_text("/*!\n * ONNX Runtime Web v1.17.0\n */")
    with pytest.raises(WebExportError, match=r"found version 1\.17\.0"):
        find_runtime()
    # Without the variable: node_modules in the working folder (or a parent) is found.
    monkeypatch.delenv(ORT_WEB_ENV)
    dist = tmp_path / "node_modules" / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    for name in RUNTIME_FILES:
        (dist / name).write_text(f"/*!\n * ONNX Runtime Web v{ORT_WEB_VERSION}\n */")
    (tmp_path / "deeper").mkdir()
    monkeypatch.chdir(tmp_path / "deeper")
    assert find_runtime().folder == dist


def test_the_cli_refuses_before_any_slow_step(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ORT_WEB_ENV, str(tmp_path / "nowhere"))

    def slow(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the ONNX export ran although the web export could not")

    monkeypatch.setattr("ursa.export.deploy.export_for_serving", slow)
    result = CliRunner().invoke(
        app, ["export", str(bundle), "--onnx", "--web", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert "npm ci" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_the_cli_writes_the_site(bundle: Path, fake_runtime: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = CliRunner().invoke(app, ["export", str(bundle), "--web", str(site)])
    assert result.exit_code == 0, result.output
    assert "model.int8.onnx (int8" in result.output and "http.server" in result.output
    assert (site / "model" / "model.int8.onnx").is_file()
    again = CliRunner().invoke(app, ["export", str(bundle), "--web", str(site)])
    assert again.exit_code == 1 and "--force" in again.output
    forced = ["export", str(bundle), "--web", str(site), "--force", "--precision", "fp32"]
    assert CliRunner().invoke(app, forced).exit_code == 0
    assert (site / "model" / "model.onnx").is_file()
    bad = CliRunner().invoke(app, ["export", str(bundle), "--web", str(site), "--precision", "x"])
    assert bad.exit_code == 2 and "is not one of" in bad.output  # the choices, checked first


def test_package_json_pins_the_runtime_the_pages_are_written_for() -> None:
    package = json.loads((REPO / "package.json").read_text())
    assert package["dependencies"] == {"onnxruntime-web": ORT_WEB_VERSION}  # exact, no ^ or ~
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == ORT_WEB_VERSION


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.csp: str | None = None
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "meta" and (values.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = values.get("content")
        if tag == "script":
            self.scripts.append(values)
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


@pytest.mark.parametrize("name", ["index.html", "live.html"])
def test_pages_have_a_csp_and_no_inline_script(name: str) -> None:
    page = _Page()
    page.feed(resources.files("ursa.export").joinpath("web_site", name).read_text("utf-8"))
    assert page.csp is not None
    directives = dict(d.strip().split(" ", 1) for d in page.csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"  # no 'unsafe-inline'
    assert directives["connect-src"] == "'self'"  # the model and runtime: this origin only
    assert not page.inline and not page.handlers
    sources = [script["src"] for script in page.scripts]
    assert sources[0] == "runtime/ort.wasm.min.js"
    assert all(src and not re.match(r"[a-z]+:|//", src) for src in sources)  # all relative


def test_the_scripts_insert_names_as_text() -> None:
    folder = resources.files("ursa.export").joinpath("web_site")
    for name in SITE_FILES:
        if name.endswith(".js"):
            text = folder.joinpath(name).read_text("utf-8")
            for risky in (
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ):
                assert risky not in text, f"{name} uses {risky}"


def test_web_options_without_web_are_refused(bundle: Path) -> None:
    from typer.testing import CliRunner

    from ursa.cli import app

    result = CliRunner().invoke(app, ["export", str(bundle), "--force"])
    assert result.exit_code == 1 and "options of --web DIR" in result.output


def test_export_into_the_current_folder(
    bundle: Path, fake_runtime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cd site && ursa export ../b.ursa --web .` (a gh-pages checkout): '.' has no name to
    stage beside, so the target is made absolute first."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.chdir(site)
    export_web(bundle, ".")
    assert (site / "index.html").is_file() and (site / MANIFEST_NAME).is_file()
    assert not list(tmp_path.glob(".*partial*"))


def test_a_planted_manifest_cannot_make_force_delete_a_file_ursa_never_wrote(
    bundle: Path, fake_runtime: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    readme = site / "README.md"
    readme.write_text("my notes\n")
    digest = hashlib.sha256(readme.read_bytes()).hexdigest()
    planted = {"format": "ursa-web-site", "files": {"README.md": {"sha256": digest}}}
    (site / MANIFEST_NAME).write_text(json.dumps(planted))
    with pytest.raises(WebExportError, match="not a previous ursa web export"):
        export_web(bundle, site, force=True)
    assert readme.read_text() == "my notes\n"
    (site / MANIFEST_NAME).write_text(
        json.dumps({"format": "ursa-web-site", "files": {"index.html": "x"}})
    )
    with pytest.raises(WebExportError, match="not a previous ursa web export"):
        export_web(bundle, site, force=True)
