"""The cleaning page in Debian's Chromium (headless), driven by Playwright, against
``ursa clean`` running on loopback: decide with the keyboard, undo, reload, compare with disk."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.clean.conftest import assert_journal_matches_disk, class_files, clean_server
from tests.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser


def assert_grid_not_blank(png: bytes) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 20, "the grid screenshot is (nearly) one flat colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # thumbnails, not just text


def cards(page: Any) -> list[dict[str, str]]:
    """The grid as the page shows it: id, label, state and file name of every card."""
    return list(
        page.eval_on_selector_all(
            "#grid .card",
            "nodes => nodes.map(n => ({id: n.dataset.id, label: n.dataset.label, "
            "state: n.dataset.state, name: n.dataset.name, "
            "selected: n.getAttribute('aria-selected')}))",
        )
    )


def selected(page: Any) -> dict[str, str]:
    return next(card for card in cards(page) if card["selected"] == "true")


def wait_for_card(page: Any, card_id: str, condition: str) -> None:
    page.wait_for_function(
        f"() => {{ const n = document.querySelector('#grid .card[data-id=\"{card_id}\"]');"
        f" return n && {condition}; }}",
        timeout=15_000,
    )


def test_relabel_delete_undo_reload_page_and_folder_agree(
    playwright: Any, tiny_bundle: tuple[Path, Path], dataset: Path, tmp_path: Path
) -> None:
    with clean_server(tiny_bundle[0], dataset) as server:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server.url}/#label=red")
            page.wait_for_selector("#grid .card img", timeout=15_000)
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('#grid .card img'))"
                ".every(img => img.complete && img.naturalWidth > 0)",
                timeout=15_000,
            )
            assert len(cards(page)) == 30
            assert_grid_not_blank(page.screenshot(path=str(tmp_path / "before.png")))

            # 1 = blue (classes in order: blue, green, red): relabel the selected image
            relabeled = selected(page)
            page.keyboard.press("1")
            wait_for_card(page, relabeled["id"], "n.dataset.label === 'blue'")
            # the selection moved on; d deletes the next image, u undoes that delete
            page.keyboard.press("ArrowRight")
            deleted = selected(page)
            assert deleted["id"] != relabeled["id"]
            page.keyboard.press("d")
            wait_for_card(page, deleted["id"], "n.dataset.state === 'deleted'")
            assert not (dataset / "red" / deleted["name"]).exists()
            page.keyboard.press("u")
            wait_for_card(page, deleted["id"], "n.dataset.state === 'active'")
            assert "undo" in page.inner_text("#status")

            on_disk = class_files(dataset)
            assert ("red", relabeled["name"]) not in on_disk
            assert any(label == "blue" and relabeled["name"].split(".")[0] in name
                       for label, name in on_disk)  # fmt: skip
            assert ("red", deleted["name"]) in on_disk
            assert_journal_matches_disk(dataset)

            page.reload()
            page.wait_for_selector("#grid .card", timeout=15_000)
            shown = {(card["label"], card["name"]) for card in cards(page)}
            assert shown == {f for f in class_files(dataset) if f[0] == "red"}  # 29 left
            assert relabeled["id"] not in {card["id"] for card in cards(page)}
            page.select_option("#label", "blue")
            page.wait_for_function(
                "() => document.querySelectorAll('#grid .card').length === 31", timeout=15_000
            )
            shown = {(card["label"], card["name"]) for card in cards(page)}
            assert shown == {f for f in class_files(dataset) if f[0] == "blue"}
            assert relabeled["id"] in {card["id"] for card in cards(page)}
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('#grid .card img'))"
                ".every(img => img.complete && img.naturalWidth > 0)",
                timeout=15_000,
            )
            assert_grid_not_blank(page.screenshot(path=str(tmp_path / "after.png")))
            assert "relabeled 1 · deleted 0" in page.inner_text("#summary")
        finally:
            browser.close()


def test_a_stale_tab_gets_a_clear_message(
    playwright: Any, tiny_bundle: tuple[Path, Path], dataset: Path
) -> None:
    with clean_server(tiny_bundle[0], dataset) as server:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            first, second = browser.new_page(), browser.new_page()
            for tab in (first, second):
                tab.goto(f"{server.url}/#label=green")
                tab.wait_for_selector("#grid .card", timeout=15_000)
            first.keyboard.press("d")
            first.wait_for_selector("#grid .card[data-state='deleted']", timeout=15_000)
            second.keyboard.press("k")  # the same image, as the second tab still shows it
            second.wait_for_selector("#status.error", timeout=15_000)
            assert "changed since this page showed it" in second.inner_text("#status")
            assert_journal_matches_disk(dataset)
        finally:
            browser.close()
