"""``ursa export BUNDLE --web DIR``: a static site that runs the model in the visitor's browser.

The folder holds the upload page and the live camera page (``index.html``,
``live.html`` and their scripts, from ``web_site/`` beside this module), the
bundle's ONNX model with its class names and preprocessing settings
(``model/``), and ONNX Runtime Web (``runtime/``), copied from the npm package
``onnxruntime-web`` at :data:`ORT_WEB_VERSION`. Nothing is fetched from the
network, at export time or when the page runs: every file comes from the
bundle, from ursa itself or from the local runtime folder, and
``ursa-site.json`` lists each one with its sha256 and where it came from.

The export is atomic: the site is written into a hidden sibling folder and
renamed into place when complete. ``force`` replaces a previous export and
nothing else: files ursa did not write there (a ``CNAME``, a ``README.md``)
move into the new site, and a file ursa wrote that has been edited since
stops the export.

Torch-free; needs no ONNX Runtime either (the browser runs the model).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import PIL

from ursa.core.bundle import INPUT_NAME, INT8_NAME, ONNX_NAME, OUTPUT_NAME, Bundle, read_bundle
from ursa.core.errors import BundleError, ConfigError, UrsaError
from ursa.core.hashing import sha256_file
from ursa.core.version import __version__

#: The onnxruntime-web release the pages are written and tested against (package.json pins it).
ORT_WEB_VERSION = "1.30.0"
#: Environment variable naming an onnxruntime-web folder (the package or its ``dist/``).
ORT_WEB_ENV = "URSA_ORT_WEB_DIR"
#: What the site needs from the package's ``dist/``: the WebAssembly build only (no WebGPU).
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
#: The pages, from ``web_site/`` beside this module.
SITE_FILES = (
    "index.html", "live.html", "pages.js", "upload.js", "live.js", "preprocess.js", "model.js",
)  # fmt: skip
#: Files the site shares with ``ursa serve``'s pages (one stylesheet, and what the pages
#: show: bars, the upload states, the live chart), by their path in the ``ursa`` package.
SHARED_FILES = {"style.css": "serve/static/style.css", "views.js": "serve/static/views.js"}
MANIFEST_NAME = "ursa-site.json"
MODEL_CONFIG = "model/config.json"
PRECISIONS = ("auto", "fp32", "int8")
#: Largest image the pages decode (width × height): ``ursa serve``'s default limit.
MAX_PIXELS = 40_000_000
#: Largest file the pages read.
MAX_FILE_BYTES = 100 * 1024 * 1024
#: Classes listed in each answer's ``top`` (as ``ursa serve``).
TOP_K = 5

_VERSION_PATTERN = re.compile(rb"ONNX Runtime Web v(\d+\.\d+\.\d+\S*)")


class WebExportError(UrsaError):
    """A web export that cannot be written as asked (no runtime, a folder in the way)."""


@dataclass(frozen=True)
class Runtime:
    """A local ONNX Runtime Web: the folder holding :data:`RUNTIME_FILES`, and its version."""

    folder: Path
    version: str


@dataclass(frozen=True)
class WebExportResult:
    """What ``export_web`` wrote."""

    site: Path
    model: str
    """The bundle member the site runs: model.onnx or model.int8.onnx."""
    precision: str
    files: int
    model_bytes: int
    runtime_bytes: int
    total_bytes: int
    kept: tuple[str, ...] = ()
    """Files of yours carried over from the previous export (``force``)."""

    def summary(self) -> str:
        """One line for a person: what was written, and how much a visitor downloads."""
        mb = 1024 * 1024
        kept = f"; kept your {', '.join(self.kept)}" if self.kept else ""
        return (
            f"wrote {self.site}/ ({self.files} files): {self.model} ({self.precision}, "
            f"{self.model_bytes / mb:.1f} MB) and ONNX Runtime Web {ORT_WEB_VERSION} "
            f"({self.runtime_bytes / mb:.1f} MB); {self.total_bytes / mb:.1f} MB in all{kept}. "
            f"Try it: python -m http.server -d {self.site} 8080"
        )


def _missing_runtime(detail: str) -> WebExportError:
    return WebExportError(
        f"the web export needs ONNX Runtime Web {ORT_WEB_VERSION} (npm package onnxruntime-web) "
        f"and {detail}. In an ursa checkout run `npm ci`; after `pip install ursa`, run "
        f"`npm install onnxruntime-web@{ORT_WEB_VERSION}` in the folder you export from, or "
        f"set {ORT_WEB_ENV} to an onnxruntime-web folder (the package or its dist/, holding "
        f"{RUNTIME_FILES[0]})"
    )


def _runtime_folders(environ: Mapping[str, str]) -> list[Path]:
    """Where to look, first match wins: $URSA_ORT_WEB_DIR, node_modules in the working
    folder or a parent (as node looks), node_modules of the ursa checkout."""
    if environ.get(ORT_WEB_ENV):
        folder = Path(environ[ORT_WEB_ENV]).expanduser()
        return [folder / "dist", folder]
    here = Path.cwd().resolve()
    candidates = [p / "node_modules" / "onnxruntime-web" / "dist" for p in (here, *here.parents)]
    checkout = Path(__file__).resolve().parents[3]  # src/ursa/export/web.py → the checkout
    candidates.append(checkout / "node_modules" / "onnxruntime-web" / "dist")
    return candidates


def find_runtime(environ: Mapping[str, str] | None = None) -> Runtime:
    """The local ONNX Runtime Web to copy into sites; :class:`WebExportError` says how to
    get it when there is none, or when it is another version than :data:`ORT_WEB_VERSION`."""
    environ = os.environ if environ is None else environ
    folders = _runtime_folders(environ)
    found = next((f for f in folders if (f / RUNTIME_FILES[0]).is_file()), None)
    if found is None:
        where = f"{ORT_WEB_ENV}={environ[ORT_WEB_ENV]}" if environ.get(ORT_WEB_ENV) else None
        raise _missing_runtime(
            f"{where} holds no {RUNTIME_FILES[0]}" if where else "found none (no node_modules)"
        )
    missing = [name for name in RUNTIME_FILES if not (found / name).is_file()]
    if missing:
        raise _missing_runtime(f"{found} lacks {', '.join(missing)}")
    with (found / RUNTIME_FILES[0]).open("rb") as stream:
        match = _VERSION_PATTERN.search(stream.read(4096))
    version = match.group(1).decode() if match else "unknown"
    if version != ORT_WEB_VERSION:
        raise _missing_runtime(f"found version {version} in {found}, not {ORT_WEB_VERSION}")
    return Runtime(folder=found, version=version)


def choose_model(bundle: Bundle, precision: str) -> str:
    """The member to run: ``auto`` takes model.int8.onnx when the bundle has one (export
    adds it only when its accuracy check passed), else model.onnx."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    if bundle.config.preprocess.input.kind != "image":
        raise ConfigError(
            f"{bundle.path} reads {bundle.config.preprocess.input.kind} files; the web pages "
            f"read images only: serve this model with `ursa serve {bundle.path}`"
        )
    has_int8, has_fp32 = INT8_NAME in bundle.members, ONNX_NAME in bundle.members
    if precision == "int8" or (precision == "auto" and has_int8):
        if not has_int8:
            raise BundleError(
                f"{bundle.path} has no {INT8_NAME} (`ursa export {bundle.path} --int8 --calibrate "
                f"DATA` adds one when it keeps the accuracy); use --precision fp32"
            )
        return INT8_NAME
    if not has_fp32:
        raise BundleError(
            f"{bundle.path} has no {ONNX_NAME}: add --onnx (`ursa export {bundle.path} --onnx "
            f"--web DIR`, needs ursa[train] for the conversion)"
        )
    return ONNX_NAME


def model_config(bundle: Bundle, member: str, model: bytes) -> dict[str, Any]:
    """``model/config.json``: what the pages need to run ``member`` as ursa does."""
    config = bundle.config
    preprocess = config.preprocess.to_dict()
    preprocess.pop("input", None)  # images only (checked by choose_model)
    # Pillow 13 changed the order of its two resize passes; the pages follow this one's.
    preprocess["pillow"] = PIL.__version__
    return {
        "format": "ursa-web-model",
        "schema_version": 1,
        "ursa_version": __version__,
        "arch": config.arch,
        "class_names": list(config.class_names),
        "preprocess": preprocess,
        "model": member,
        "precision": "int8" if member == INT8_NAME else "fp32",
        "model_bytes": len(model),
        "model_sha256": hashlib.sha256(model).hexdigest(),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "top_k": TOP_K,
        "max_pixels": MAX_PIXELS,
        "max_file_bytes": MAX_FILE_BYTES,
        "onnxruntime_web": ORT_WEB_VERSION,
    }


def site_sources(runtime: Runtime, model: str) -> dict[str, str]:
    """Every file a site holds (but model/config.json and the manifest), with where it
    comes from: ``ursa:PATH`` (in the package), ``onnxruntime-web:dist/NAME`` or
    ``bundle:MEMBER``."""
    sources = {name: f"ursa:export/web_site/{name}" for name in SITE_FILES}
    sources |= {name: f"ursa:{path}" for name, path in SHARED_FILES.items()}
    sources |= {f"runtime/{name}": f"onnxruntime-web:dist/{name}" for name in RUNTIME_FILES}
    sources[f"model/{model}"] = f"bundle:{model}"
    return sources


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A previous export's ``ursa-site.json``, or None when ``folder`` holds none (or a bad one)."""
    path = folder / MANIFEST_NAME
    if not path.is_file() or path.is_symlink():
        return None
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(manifest, dict) and manifest.get("format") == "ursa-web-site"
    files = manifest.get("files") if ok else None
    if not isinstance(files, dict):
        return None
    for name, entry in files.items():
        # Only names ursa writes itself: a planted manifest listing README.md with its
        # hash must not make --force delete it.
        if name not in _OWN_NAMES and not _OWN_MODEL.fullmatch(name):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            return None
    return manifest


#: Every name a site of ours holds (but the model, matched by ``_OWN_MODEL``).
_OWN_NAMES = frozenset(
    {*SITE_FILES, *SHARED_FILES, MODEL_CONFIG, *(f"runtime/{n}" for n in RUNTIME_FILES)}
)
_OWN_MODEL = re.compile(r"model/model(\.int8)?\.onnx")


def _user_files(folder: Path, listed: Mapping[str, Any]) -> list[str]:
    """Paths under ``folder`` (relative, posix) that the manifest does not list: whole
    folders where nothing inside is listed."""
    found: list[str] = []
    ancestors = {p.as_posix() for name in listed for p in Path(name).parents if p != Path(".")}

    def walk(current: Path, prefix: str) -> None:
        for entry in sorted(current.iterdir()):
            relative = f"{prefix}{entry.name}"
            if relative == MANIFEST_NAME or relative in listed:
                continue
            if entry.is_dir() and not entry.is_symlink() and relative in ancestors:
                walk(entry, relative + "/")
            else:
                found.append(relative)

    walk(folder, "")
    return found


def check_target(target: Path, *, force: bool) -> list[str]:
    """Refuse a target that cannot be written: a file, or a non-empty folder (without
    ``force``; with it, one that is not a previous export or whose files were edited).
    Returns the files of yours a forced export carries over."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise WebExportError(f"{target} exists and is not a folder; choose a folder for the site")
    if not target.exists() or not any(target.iterdir()):
        return []
    manifest = read_manifest(target)
    if not force:
        hint = " (a previous export: --force replaces it)" if manifest else ""
        raise WebExportError(
            f"{target} is not empty{hint}; choose a new or empty folder for the site"
        )
    if manifest is None:
        raise WebExportError(
            f"{target} holds files but no {MANIFEST_NAME}, so it is not a previous ursa web "
            f"export; --force replaces only those (nothing else is deleted): choose another folder"
        )
    listed: dict[str, Any] = manifest["files"]
    for name, entry in listed.items():
        path = target / name
        if not _safe_relative(name) or path.is_symlink() or (path.exists() and not path.is_file()):
            raise WebExportError(f"{target}/{MANIFEST_NAME} lists {name!r}, not a site file")
        if path.is_file() and sha256_file(path) != entry.get("sha256"):
            raise WebExportError(
                f"{path} was changed after ursa wrote it; move it out of {target} (or delete "
                f"it) before exporting there again"
            )
    return _user_files(target, listed)


def _safe_relative(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and "\\" not in name


def _write_site(folder: Path, bundle: Bundle, member: str, runtime: Runtime) -> dict[str, Any]:
    """Every file of the site into ``folder`` (empty), the manifest last; returns it."""
    model = bundle.read(member)
    sources = site_sources(runtime, member)
    files: dict[str, dict[str, Any]] = {}
    package = resources.files("ursa")
    for name, source in sources.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if source.startswith("ursa:"):
            path.write_bytes(package.joinpath(source.removeprefix("ursa:")).read_bytes())
        elif source.startswith("onnxruntime-web:"):
            shutil.copyfile(runtime.folder / Path(name).name, path)
        else:
            path.write_bytes(model)
        files[name] = {"source": source}
    config = json.dumps(model_config(bundle, member, model), indent=2) + "\n"
    (folder / MODEL_CONFIG).write_text(config, "utf-8")
    files[MODEL_CONFIG] = {"source": "generated:model_config"}
    for name, entry in files.items():
        path = folder / name
        entry |= {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {
        "format": "ursa-web-site",
        "schema_version": 1,
        "ursa_version": __version__,
        "bundle": bundle.path.name,
        "model": member,
        "onnxruntime_web": runtime.version,
        "files": dict(sorted(files.items())),
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return manifest


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _move_into(names: list[str], source: Path, target: Path) -> None:
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        os.rename(source / name, target / name)


def _remove_export(folder: Path, listed: Mapping[str, Any]) -> None:
    """Delete what a previous export wrote, file by file, then its empty folders; anything
    else left there stays (the folder with it)."""
    for name in [*listed, MANIFEST_NAME]:
        with contextlib.suppress(OSError):  # the new site is in place: leftovers stay aside
            (folder / name).unlink()
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
    with contextlib.suppress(OSError):
        folder.rmdir()


def _swap_in(staging: Path, target: Path, keep: list[str]) -> None:
    """Put the finished ``staging`` folder at ``target``; a previous export there is moved
    aside first (with ``keep`` carried over into the new one), removed only afterwards."""
    if not target.exists():
        os.rename(staging, target)
        return
    if not any(target.iterdir()):
        target.rmdir()
        os.rename(staging, target)
        return
    listed = (read_manifest(target) or {}).get("files", {})
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    aside.rmdir()
    os.rename(target, aside)
    try:
        _move_into(keep, aside, staging)
        os.rename(staging, target)
    except BaseException:
        _move_into([n for n in keep if (staging / n).exists() or (staging / n).is_symlink()],
                   staging, aside)  # fmt: skip
        os.rename(aside, target)
        raise
    _remove_export(aside, listed)


def check_web_export(
    target: str | Path, *, precision: str = "auto", force: bool = False
) -> Runtime:
    """The checks that need no bundle, done before any slow step: the runtime is there,
    ``precision`` is known and ``target`` can be written. Returns the runtime."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    runtime = find_runtime()
    check_target(_absolute(target), force=force)
    return runtime


def _absolute(target: str | Path) -> Path:
    """``target`` made absolute without resolving links: ``.`` has no name or parent to
    stage the new site beside."""
    return Path(os.path.abspath(target))


def export_web(
    bundle: str | Path,
    target: str | Path,
    *,
    precision: str = "auto",
    force: bool = False,
    runtime: Runtime | None = None,
) -> WebExportResult:
    """Write the static site for ``bundle`` into the folder ``target``, atomically.

    ``precision``: ``auto`` (int8 when the bundle has an accepted int8 model), ``fp32``
    or ``int8``. ``force`` replaces a previous export in ``target`` (see the module notes).
    """
    runtime = runtime or check_web_export(target, precision=precision, force=force)
    target = _absolute(target)
    opened = read_bundle(bundle)
    member = choose_model(opened, precision)
    keep = check_target(target, force=force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as error:
        raise WebExportError(
            f"cannot write beside {target} ({error.strerror or error}): the site is written "
            f"next to its folder and renamed into place; choose a folder whose parent you can "
            f"write"
        ) from None
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would hide the site from a server
        manifest = _write_site(staging, opened, member, runtime)
        clashes = [name for name in keep if (staging / name).exists()]
        if clashes:
            raise WebExportError(
                f"{target} holds {', '.join(clashes)}, which the new export writes too; move "
                f"them out of {target} first"
            )
        try:
            _swap_in(staging, target, keep)
        except OSError as error:  # e.g. a mount point, or a parent this user cannot write
            raise WebExportError(
                f"cannot put the site in place at {target} ({error.strerror or error}); the "
                f"folder is as it was: export to a new folder beside it and move the files "
                f"yourself"
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the partial site is ours alone
        raise
    files = manifest["files"]
    return WebExportResult(
        site=target,
        model=member,
        precision="int8" if member == INT8_NAME else "fp32",
        files=len(files) + 1,
        model_bytes=files[f"model/{member}"]["bytes"],
        runtime_bytes=sum(files[f"runtime/{name}"]["bytes"] for name in RUNTIME_FILES),
        total_bytes=sum(entry["bytes"] for entry in files.values()),
        kept=tuple(keep),
    )


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files; with ``isolated``, the two headers that make the pages cross-origin
    isolated (and so multi-threaded)."""

    isolated = False
    extensions_map = {  # noqa: RUF012 - replaces the base class's attribute
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
    }

    def end_headers(self) -> None:
        if self.isolated:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _IsolatedHandler(_SiteHandler):
    isolated = True


@contextlib.contextmanager
def serve_site(folder: str | Path, *, isolated: bool = False, port: int = 0) -> Iterator[str]:
    """Serve an exported site on 127.0.0.1 in a background thread; yields its URL.

    ``isolated`` sends Cross-Origin-Opener-Policy / Cross-Origin-Embedder-Policy, as a host
    configured for threads would. For trying a site locally, tests and benchmarks.
    """
    handler = functools.partial(
        _IsolatedHandler if isolated else _SiteHandler, directory=str(folder)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name="ursa-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
