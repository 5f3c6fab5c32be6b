"""ursa serve's pages and the web export's pages draw results with one copy of the code:
``serve/static/views.js``, which the export copies into the site (``SHARED_FILES``)."""

from __future__ import annotations

import re
from collections import defaultdict
from importlib import resources

from ursa.export.web import SHARED_FILES, SITE_FILES

SERVE = resources.files("ursa.serve").joinpath("static")
SITE = resources.files("ursa.export").joinpath("web_site")

_CONTAINER = re.compile(r"^(?:const|let|var) (\w+) = \{|^class (\w+)")
_TOP_FUNCTION = re.compile(r"^(?:async )?function (\w+)\(")
_MEMBER = re.compile(r"^  (?:static )?(?:async )?(\w+)\([^)]*\) \{")
_KEYWORDS = frozenset({"if", "for", "while", "switch", "catch", "constructor"})


def _definitions(text: str) -> list[str]:
    """Functions a page script defines: ``name`` at the top level, ``container.name``
    for the methods of an object literal or class (so ``ursa.showModel``, asking the
    server, and ``pages.showModel``, asking the browser's model, stay apart)."""
    names: list[str] = []
    container = ""
    for line in text.splitlines():
        if found := _CONTAINER.match(line):
            container = found.group(1) or found.group(2)
            names.append(container)
        elif found := _TOP_FUNCTION.match(line):
            names.append(found.group(1))
            container = ""
        elif container and (found := _MEMBER.match(line)) and found.group(1) not in _KEYWORDS:
            names.append(f"{container}.{found.group(1)}")
    return names


def test_no_function_of_the_pages_is_written_twice() -> None:
    scripts = {f"serve/{p.name}": p.read_text() for p in SERVE.iterdir() if p.name.endswith(".js")}
    scripts |= {
        f"web_site/{name}": SITE.joinpath(name).read_text()
        for name in SITE_FILES
        if name.endswith(".js")
    }
    where: dict[str, list[str]] = defaultdict(list)
    for path, text in scripts.items():
        for name in _definitions(text):
            where[name].append(path)
    assert {"views", "Ring", "percentile", "UploadPage", "LivePage"} <= set(where)
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert twice == {}


def test_every_page_of_both_sites_loads_the_shared_views_before_its_own_script() -> None:
    assert SHARED_FILES["views.js"] == "serve/static/views.js"
    pages = {
        SERVE.joinpath("index.html"): ("/static/views.js", "/static/upload.js"),
        SERVE.joinpath("live.html"): ("/static/views.js", "/static/live.js"),
        SITE.joinpath("index.html"): ("views.js", "upload.js"),
        SITE.joinpath("live.html"): ("views.js", "live.js"),
    }
    for page, (shared, own) in pages.items():
        sources = re.findall(r'<script src="([^"]+)"', page.read_text())
        assert shared in sources and own in sources, (page.name, sources)
        assert sources.index(shared) < sources.index(own), (page.name, sources)
