"""The app as an attacker sees it: app.py on 127.0.0.1 (the shared server from tests/fixtures_app.py) called
with bare HTTP requests, as any client can, on every endpoint that takes an image or a video, the private ones
included.

The app must read only files the user uploaded through Gradio, refuse everything else with one answer that
does not tell whether a path exists, show no server path, refuse a pixel bomb at once, and bound its queue."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio.utils import get_upload_folder

from tests import test_video
from tests.fixtures_app import bomb_png, call_api, upload

REPO = Path(__file__).resolve().parent.parent
PHOTO = "subhih-handsdataset/images/test/16_pic00008.jpg"  # Hands Dataset, Soubhi Hadri, Apache-2.0
META = {"_type": "gradio.FileData"}
clip = test_video.clip  # the real clip: 22 consecutive Hands Dataset captures, as .mp4
UPLOAD_ENDPOINTS = {"analyse", "changed", "live", "predict", "track"}  # at least these (two are private)
FILE_KINDS = {"image", "video"}  # the inputs that name an uploaded file
SLOT = object()  # an upload's place in an endpoint's data


def upload_endpoints(url: str) -> dict[str, tuple[str, list]]:
    """Every backend function whose inputs include an image or a video (public, undocumented or private), read
    from /config: api_name -> (the kind of file it takes, its inputs' default data with SLOT in the file's place)."""
    config = json.loads(urllib.request.urlopen(url + "config", timeout=30).read())
    components = {c["id"]: c for c in config["components"]}
    endpoints = {}
    for dependency in config["dependencies"]:
        kinds = [components[i]["type"] for i in dependency["inputs"]]
        if dependency.get("backend_fn") and FILE_KINDS & set(kinds):
            (kind,) = FILE_KINDS & set(kinds)
            endpoints[dependency["api_name"]] = (
                kind,
                [
                    SLOT if kind in FILE_KINDS else components[i].get("props", {}).get("value")
                    for i, kind in zip(dependency["inputs"], kinds)
                ],
            )
    return endpoints


def with_file(defaults: list, payload) -> list:
    return [payload if value is SLOT else value for value in defaults]


@pytest.fixture(scope="module")
def server_files(trained_classifier: Path, data_root: Path, clip, tmp_path_factory) -> dict[str, str]:
    """Paths on the server a payload may name: real files (a model's png, a real photo, a real clip, the README),
    a missing file, a folder, tricks that resolve outside Gradio's upload cache."""
    cache = Path(get_upload_folder())
    link_folder = cache / f"test-link-{uuid.uuid4().hex}"
    link_folder.mkdir(parents=True)
    (link_folder / "photo.png").symlink_to(trained_classifier / "confusion_matrix.png")
    yield {
        "/etc/passwd": "/etc/passwd",
        "model png": str(trained_classifier / "confusion_matrix.png"),
        "real photo": str(data_root / PHOTO),
        "real clip": str(clip[0]),
        "README": str(REPO / "README.md"),
        "relative": "README.md",
        "missing": str(REPO / "no-such-image.png"),
        "folder": str(trained_classifier),
        "traversal": f"{cache}/../../{'/'.join(['..'] * 8)}/etc/passwd",
        "symlink in cache": str(link_folder / "photo.png"),
    }
    (link_folder / "photo.png").unlink()
    link_folder.rmdir()


def test_server_paths_are_refused_on_every_endpoint(app_url: str, server_files: dict[str, str]):
    """Raw {"path": ...}, Gradio's FileData form and a bare string, naming server files, on every endpoint
    that takes an image or a video (private ones too: anyone can call them over HTTP). Each is refused, with the
    same answer for an existing image or clip, a missing file and a folder (no oracle), naming no server path."""
    endpoints = upload_endpoints(app_url)
    assert set(endpoints) >= UPLOAD_ENDPOINTS, endpoints
    forms = {"raw": lambda p: {"path": p}, "FileData": lambda p: {"path": p, "meta": META}, "string": lambda p: p}
    for api_name, (_, defaults) in endpoints.items():
        for form, make in forms.items():
            answers = {}
            for target, path in server_files.items():
                event, message = call_api(app_url, api_name, with_file(defaults, make(path)))
                assert event == "error", f"/{api_name} served {target} ({form} payload {path}): {event} {message}"
                answers[target] = message
            assert len(set(answers.values())) == 1, f"/{api_name}, {form} payload: answers differ {answers}"
            message = answers["missing"] or ""
            assert "/" not in message, message
            assert "Traceback" not in message, message


def test_an_upload_still_works_on_every_endpoint(app_url: str, data_root: Path, clip):
    """The refusals above are not a closed door: a real photo (or clip) uploaded through Gradio is answered
    everywhere."""
    payloads = {
        "image": upload(app_url, "hands.jpg", (data_root / PHOTO).read_bytes()),
        "video": upload(app_url, "clip.mp4", clip[0].read_bytes()),
    }
    for api_name, (kind, defaults) in upload_endpoints(app_url).items():
        event, outputs = call_api(app_url, api_name, with_file(defaults, payloads[kind]))
        assert event in ("complete", "generating"), f"/{api_name}: {event} {outputs}"
        assert outputs, f"/{api_name}: {event} {outputs}"


def test_config_and_api_info_show_no_server_path(
    app_url: str, trained_detector: Path, trained_classifier: Path, data_root: Path
):
    with httpx.Client(timeout=30) as http:
        pages = {page: http.get(app_url + page).text for page in ("config", "gradio_api/info", "")}
    for page, text in pages.items():
        for path in (REPO, trained_detector, trained_classifier, trained_detector.parent, data_root.resolve()):
            assert str(path) not in text, f"/{page} shows the server path {path}"
    assert "`detector` (local folder)" in pages["config"], "the page no longer names the detector it runs"


@pytest.mark.parametrize("api_name, extra", [("predict", []), ("analyse", [False])])
def test_400_megapixel_bomb_is_too_large_at_once(app_url: str, data_root: Path, api_name: str, extra: list):
    bomb = upload(app_url, "bomb.png", bomb_png())
    started = time.perf_counter()
    event, message = call_api(app_url, api_name, [bomb, 0.01, 0.0, *extra])
    seconds = time.perf_counter() - started
    assert event == "error", (event, message)
    assert message, (event, message)
    assert "too large" in message, message
    assert "bomb.png" in message, message
    assert "Traceback" not in message, message
    assert seconds < 10, f"refusing the bomb took {seconds:.1f} s"
    photo = upload(app_url, "hands.jpg", (data_root / PHOTO).read_bytes())
    assert call_api(app_url, api_name, [photo, 0.01, 0.0, *extra])[0] == "complete", "the next request failed"


def test_queue_is_bounded(app_url: str, data_root: Path):
    """48 slow requests at once: the queue takes what fits and turns the rest away at once (HTTP 503)."""
    photo = upload(app_url, "hands.jpg", (data_root / PHOTO).read_bytes())
    body = {"data": [photo, 0.01, 0.0, True]}  # Grad-CAM + EigenCAM: ~1 s each here

    def post(_) -> httpx.Response:
        return httpx.post(f"{app_url}gradio_api/call/analyse", json=body, timeout=60)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(post, range(48)))
    accepted = [r.json()["event_id"] for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    try:
        assert refused, [(r.status_code, r.text[:100]) for r in refused]
        assert all(r.status_code == 503 and "Queue is full" in r.text for r in refused), [
            (r.status_code, r.text[:100]) for r in refused
        ]
    finally:  # let the accepted ones finish, so the shared server is idle for the next test
        with httpx.Client(timeout=300) as http:
            for event_id in accepted:
                http.get(f"{app_url}gradio_api/call/analyse/{event_id}").raise_for_status()
