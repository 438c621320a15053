"""The app in a real browser: Debian's headless Chromium (`make browser`) driven by Playwright opens
the page, uploads a real photo and waits for the annotated image and the Grad-CAM gallery (screenshot
kept in artifacts/app.png), and streams Chromium's fake webcam through the live view."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
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


@pytest.fixture(scope="module")
def browser() -> Browser:
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run `make browser`"
    with sync_playwright() as playwright:
        # Playwright starts Chromium with a fresh temporary profile (--user-data-dir) every launch.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def test_upload_shows_hands_and_gradcam(browser: Browser, app_url: str, data_root: Path, trained_detector: Path):
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "app.png"
    screenshot.unlink(missing_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url, wait_until="domcontentloaded")
    # the page names the folder it runs, never its server path
    expect(page.locator("#models")).to_contain_text(f"{trained_detector.name} (local folder)", timeout=60_000)
    expect(page.locator("#models")).not_to_contain_text(str(trained_detector.parent))
    page.locator("#input-image input[type=file]").set_input_files(str(data_root / PHOTO))
    expect(page.locator("#annotated img")).to_be_visible(timeout=120_000)
    expect(page.locator("#hand-gallery img").first).to_be_visible(timeout=120_000)
    expect(page.locator("#status")).to_contain_text(re.compile(r"\d+ hands? found"))
    caption = page.locator("#hand-gallery img").first.get_attribute("alt") or ""  # 'hand N: <gesture> NN%'
    gesture = re.fullmatch(r"hand \d+: (\S+) \d+%", caption)
    assert gesture, f"unexpected gallery caption {caption!r}"
    expect(page.locator("#hands-table")).to_contain_text(gesture.group(1))
    expect(page.locator("#gradcam img")).to_be_visible()
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    assert screenshot.stat().st_size > 50_000
    print(f"screenshot: {screenshot}")


def test_live_webcam_streams_annotated_frames(browser: Browser, app_url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    page = context.new_page()
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_role("tab", name="Live webcam").click()
    page.get_by_text("Click to Access Webcam").click()
    page.locator("button").filter(has_text=re.compile(r"^\s*Record\s*$")).first.click()
    expect(page.locator("#live img")).to_be_visible(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "live.png"))
    context.close()
