"""The app in a real browser: Debian's headless Chromium (`make browser`) driven by Playwright opens the page,
uploads a real photo and reads what the page shows (the models it runs, the hands table, the gesture labels,
the Grad-CAM gallery), and streams Chromium's fake webcam through the live view."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

PHOTO = "subhih-handsdataset/images/test/16_pic00008.jpg"  # Hands Dataset, Soubhi Hadri, Apache-2.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # a synthetic camera (moving test pattern) that needs no permission prompt
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
COLUMNS = ["hand", "gesture", "probability", "detector score", "box (x0, y0, x1, y1)", "top 3"]


@pytest.fixture(scope="module")
def browser() -> Browser:
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run `make browser`"
    with sync_playwright() as playwright:
        # Playwright starts Chromium with a fresh temporary profile (--user-data-dir) every launch.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def table_rows(page: Page) -> list[dict[str, str]]:
    """The hands table as the page shows it: one dict (column -> cell text) per rendered row."""
    rows = page.locator("#hands-table [role=row][data-index]").all()
    return [dict(zip(COLUMNS, row.locator("[role=gridcell]").all_inner_texts())) for row in rows]


def test_upload_shows_hands_table_gestures_and_gradcam(
    browser: Browser, app_url: str, data_root: Path, trained_detector: Path, trained_classifier: Path, tmp_path: Path
):
    labels = json.loads((trained_classifier / "config.json").read_text())["label_names"]
    width, height = Image.open(data_root / PHOTO).size
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        # the page names the folders it runs, never their server path
        models = page.locator("#models")
        expect(models).to_contain_text("Models running", timeout=60_000)
        expect(models).to_contain_text(f"detector: {trained_detector.name} (local folder)")
        expect(models).to_contain_text(f"classifier: {trained_classifier.name} (local folder)")
        expect(models).not_to_contain_text(str(trained_detector.parent))
        # classifier threshold 0: every hand is named by its most likely gesture, never 'unknown'
        page.get_by_label("number input for Classifier threshold").fill("0")
        page.locator("#input-image input[type=file]").set_input_files(str(data_root / PHOTO))
        status = page.locator("#status")
        expect(status).to_contain_text(re.compile(r"\d+ hands? found"), timeout=120_000)
        found = int(re.search(r"(\d+) hands? found", status.inner_text()).group(1))
        assert found >= 1, status.inner_text()
        expect(page.locator("#annotated img")).to_be_visible()

        expect(page.locator("#hands-table [role=columnheader]").first).to_be_visible()
        rows = table_rows(page)
        assert len(rows) == found, rows  # the tiny detector finds a handful: every row is rendered
        assert [row["hand"] for row in rows] == [str(n) for n in range(1, found + 1)], rows
        for row in rows:
            assert row["gesture"] in labels, row
            assert row["top 3"].startswith(f"{row['gesture']} "), row  # the most likely of the top 3
            assert 0 <= float(row["probability"]) <= 1, row
            x0, y0, x1, y1 = (int(v) for v in row["box (x0, y0, x1, y1)"].split(", "))
            assert 0 <= x0 < x1 <= width, row
            assert 0 <= y0 < y1 <= height, row

        # the Grad-CAM tab: the whole-image overlay, and one crop per hand captioned like its table row
        expect(page.locator("#gradcam img")).to_be_visible()
        crops = page.locator("#hand-gallery img")
        expect(crops.first).to_be_visible()
        assert crops.count() == min(found, 8)
        for crop in crops.all():
            caption = crop.get_attribute("alt") or ""
            match = re.fullmatch(r"hand (\d+): (\S+) (\d+)%", caption)
            assert match, f"unexpected gallery caption {caption!r}"
            row = rows[int(match.group(1)) - 1]
            assert match.group(2) == row["gesture"], (caption, row)
            assert abs(int(match.group(3)) - 100 * float(row["probability"])) <= 1, (caption, row)
    finally:
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)  # for a look when it fails
        page.close()


def test_live_webcam_streams_annotated_frames(browser: Browser, app_url: str, tmp_path: Path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    page = context.new_page()
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Live webcam").click()
        page.get_by_text("Click to Access Webcam").click()
        page.locator("button").filter(has_text=re.compile(r"^\s*Record\s*$")).first.click()
        live = page.locator("#live img")
        expect(live).to_be_visible(timeout=60_000)
        first = live.get_attribute("src")
        assert first, "the live view shows an image without a source"
        # a stream, not one frame: a new annotated frame replaces the first
        expect(live).not_to_have_attribute("src", first, timeout=30_000)
    finally:
        page.screenshot(path=str(tmp_path / "live.png"))
        context.close()
