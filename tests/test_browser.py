"""The app in a real browser: Debian's headless Chromium (`make browser`) driven by Playwright opens the page,
uploads a real photo and reads what the page shows (the models it runs, the hands table, the gesture labels,
the Grad-CAM gallery), tracks the hands of a real clip in the Video tab, and streams a fake webcam fed by
that clip (Chromium plays a .y4m file as the camera) through the live view, which names track ids and gestures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from hybrid.video import read_video
from tests import test_video

clip = test_video.clip  # the real clip: 22 consecutive Hands Dataset captures, as .mp4
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
COLUMNS = ["hand", "gesture", "probability", "detector score", "box (x0, y0, x1, y1)", "top 3", "which hand"]
COLUMNS += ["fingers up"]


def write_y4m(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """RGB frames as a YUV4MPEG2 file (4:2:0), the format Chromium's fake camera plays (in a loop)."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def camera_clip(clip, tmp_path_factory) -> Path:
    """The real clip at 640x480 as a .y4m for the fake camera."""
    frames = [cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA) for _, frame in read_video(clip[0])]
    return write_y4m(frames, tmp_path_factory.mktemp("camera") / "clip.y4m", fps=10)


@pytest.fixture(scope="module")
def browser(camera_clip: Path) -> Browser:
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run `make browser`"
    with sync_playwright() as playwright:
        # Playwright starts Chromium with a fresh temporary profile (--user-data-dir) every launch.
        args = [*ARGS, f"--use-file-for-fake-video-capture={camera_clip}"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
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
        # ... and what they are: architecture and input size, from their config.json
        expect(models).to_contain_text(f"detector: YOLOv8n at 64 px, {trained_detector.name} (local folder)")
        expect(models).to_contain_text(f"classifier: resnet50 at 32 px, {trained_classifier.name} (local folder)")
        expect(models).not_to_contain_text(str(trained_detector.parent))
        # the example photos (a gallery filled when the page opens; /config does not list them)
        examples = page.locator("#examples img")
        expect(examples.first).to_be_visible(timeout=60_000)
        assert examples.count() == 6
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


HAND = re.compile(r"#(\d+) (\S+) (\d+)%")  # a tracked hand as the live view names it: '#id gesture probability'
# Every text the live hands list shows, kept as it changes: the tiny test detector's scores (~0.012) are too low
# for ByteTrack to match a box from one frame to the next (it weighs overlap by score), so a test hand is only
# shown on the first frame of a tracker; a trained detector's hands stay listed.
RECORD_LIVE_HANDS = """() => {
    window.liveHands = [];
    const node = document.querySelector('#live-hands');
    new MutationObserver(() => window.liveHands.push(node.innerText))
        .observe(node, {childList: true, subtree: true, characterData: true});
}"""


def test_live_webcam_streams_tracked_hands_with_ids_and_gestures(
    browser: Browser, app_url: str, trained_classifier: Path, tmp_path: Path
):
    labels = json.loads((trained_classifier / "config.json").read_text())["label_names"]
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    page = context.new_page()
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        expect(page.locator("#models")).to_contain_text("Models running", timeout=60_000)
        page.get_by_label("number input for Detector threshold").fill("0.01")  # the tiny detector's scores
        page.get_by_label("number input for Classifier threshold").fill("0")  # gestures, never 'unknown'
        page.get_by_role("tab", name="Live webcam").click()
        expect(page.locator("#live-note")).to_contain_text("frames per second (stream_every")  # the rate, stated
        page.evaluate(RECORD_LIVE_HANDS)
        page.get_by_text("Click to Access Webcam").click()
        page.locator("button").filter(has_text=re.compile(r"^\s*Record\s*$")).first.click()
        live = page.locator("#live img")
        expect(live).to_be_visible(timeout=60_000)
        first = live.get_attribute("src")
        assert first, "the live view shows an image without a source"
        # a stream, not one frame: a new annotated frame replaces the first
        expect(live).not_to_have_attribute("src", first, timeout=30_000)
        # the hands of the clip, each named by its track id and its smoothed gesture, under the live view
        page.wait_for_function(f"() => window.liveHands.some(text => /{HAND.pattern}/.test(text))", timeout=30_000)
        seen = page.evaluate("() => window.liveHands")
        shown = [hand for text in seen for hand in HAND.findall(text)]
        assert shown, seen
        for track_id, label, percent in shown:
            assert int(track_id) >= 1 and label in labels and 0 <= int(percent) <= 100, shown
    finally:
        page.screenshot(path=str(tmp_path / "live.png"))
        context.close()


def test_video_tab_plays_the_tracked_clip_and_lists_its_tracks(
    browser: Browser, app_url: str, clip, trained_classifier: Path, tmp_path: Path
):
    labels = json.loads((trained_classifier / "config.json").read_text())["label_names"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        expect(page.locator("#models")).to_contain_text("Models running", timeout=60_000)
        page.get_by_label("number input for Detector threshold").fill("0.01")
        page.get_by_label("number input for Classifier threshold").fill("0")
        page.get_by_role("tab", name="Video").click()
        expect(page.locator("#video-status")).to_contain_text("at most 30 s")  # the limits are on the page
        page.locator("#input-video input[type=file]").set_input_files(str(clip[0]))
        expect(page.locator("#input-video video")).to_be_attached(timeout=60_000)
        page.get_by_role("button", name="Track hands").click()
        expect(page.locator("#video-status")).to_contain_text(f"in {len(clip[1])} frames", timeout=180_000)
        rows = page.locator("#tracks-table [role=row][data-index]").all()
        assert rows, page.locator("#video-status").inner_text()
        for row in rows:
            track_id, seen, gesture, share = row.locator("[role=gridcell]").all_inner_texts()
            assert int(track_id) >= 1 and 1 <= int(seen) <= len(clip[1]) and gesture in labels, (track_id, gesture)
            assert re.fullmatch(r"\d+%", share), share
        # the annotated clip plays in Chromium: it decodes and knows its length (22 frames at 10 fps)
        video = page.locator("#tracked-video video")
        expect(video).to_be_attached(timeout=30_000)
        page.wait_for_function(
            "() => { const v = document.querySelector('#tracked-video video'); return v && v.readyState >= 1; }",
            timeout=30_000,
        )
        assert video.evaluate("v => v.duration") == pytest.approx(len(clip[1]) / 10, abs=0.3)
        assert video.evaluate("v => [v.videoWidth, v.videoHeight]") == [800, 600]
    finally:
        page.screenshot(path=str(tmp_path / "video.png"), full_page=True)
        page.close()
