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
import psutil
import pytest
from gradio.utils import get_upload_folder
from PIL import Image

from tests import hostile, test_video
from tests.fixtures_app import SERVER_PIDS, bomb_png, call_api, upload

REPO = Path(__file__).resolve().parent.parent
PHOTO = hostile.PHOTO
META = {"_type": "gradio.FileData"}
clip = test_video.clip  # the real clip: 22 consecutive Hands Dataset captures, as .mp4
UPLOAD_ENDPOINTS = {"analyse", "changed", "live", "predict", "track"}  # at least these (two are private)
FILE_KINDS = {"image", "video"}  # the inputs that name an uploaded file
SLOT = object()  # an upload's place in an endpoint's data
UPLOAD_SECONDS = 1  # what an upload and the call's own round trip may add to a refusal on a busy machine


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
    uploads = Path(get_upload_folder()).resolve()  # where Gradio keeps files, the example photos' copies too
    for page, text in pages.items():
        for path in (REPO, trained_detector, trained_classifier, trained_detector.parent, data_root.resolve(), uploads):
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


# --- budgets: every request is bounded before the work (hybrid.limits) -------------------------------------------


@pytest.mark.parametrize("threshold", [0, 0.0, -1, 1.5, "0.5", None, True])
@pytest.mark.parametrize("api_name, extra", [("predict", []), ("analyse", [False])])
def test_thresholds_outside_the_sliders_are_refused(
    app_url: str, data_root: Path, api_name: str, extra: list, threshold
):
    """The API takes any JSON: a detector threshold of 0 (hundreds of boxes on a large photo: it once took the
    server down), below the slider's 0.01, or not a number, gets one line naming the setting."""
    photo = upload(app_url, "hands.jpg", (data_root / PHOTO).read_bytes())
    event, message = call_api(app_url, api_name, [photo, threshold, 0.0, *extra])
    assert event == "error" and "detector threshold must be a number from 0.01 to 0.95" in (message or ""), message
    event, message = call_api(app_url, api_name, [photo, 0.5, threshold if threshold != 0 else -0.5, *extra])
    assert event == "error" and "classifier threshold must be a number from 0 to 1" in (message or ""), message


def test_a_48_megapixel_photo_at_the_lowest_threshold_stays_within_memory(app_url: str, data_root: Path):
    """The slider's lowest threshold on a 48 MP photo with the one-epoch detector (whose scores sit at the prior,
    so hundreds of boxes pass): at most MAX_HANDS hands, each crop cut at the classifier's size, the page's images
    drawn at MAX_DISPLAY_SIDE, and Grad-CAM and EigenCAM done, within 1.5 GB of server memory."""
    from hybrid.limits import MAX_DISPLAY_SIDE, MAX_HANDS

    photo = upload(app_url, "large.jpg", hostile.large_photo(data_root))
    with hostile.peak_rss(SERVER_PIDS[app_url]) as peak:
        started = time.perf_counter()
        event, outputs = call_api(app_url, "analyse", [photo, 0.01, 0.0, True], timeout=300)
        seconds = time.perf_counter() - started
    assert event == "complete", outputs
    result = outputs[-1]
    assert (result["width"], result["height"]) == (8000, 6000)
    assert 0 < len(result["hands"]) <= MAX_HANDS
    assert max(hand["box"][2] for hand in result["hands"]) > 2048  # boxes in the photo's pixels, not the page's
    shown = Image.open(Path(outputs[0]["path"]))
    assert max(shown.size) == MAX_DISPLAY_SIDE
    assert peak[0] < 1.5 * 2**30, f"peak RSS {peak[0] / 2**20:.0f} MiB"
    print(f"48 MP photo: {len(result['hands'])} hands in {seconds:.1f} s, peak RSS {peak[0] / 2**20:.0f} MiB")


def test_bad_requests_are_refused_without_waiting_behind_a_large_photo(app_url: str, data_root: Path, clip):
    """While a 48 MP photo holds the model (several seconds), a threshold of 0, a truncated JPEG and a playlist
    are each refused within 2 s: their inputs are checked before they wait for the model. They used to wait in
    the queue behind the photo. A good photo sent meanwhile waits its turn and is answered."""
    photo_bytes = (data_root / PHOTO).read_bytes()
    large = upload(app_url, "large.jpg", hostile.large_photo(data_root))
    photo = upload(app_url, "hands.jpg", photo_bytes)
    bad = {
        "threshold 0": ("predict", [photo, 0.0, 0.0]),
        "truncated jpeg": (
            "analyse",
            [upload(app_url, "cut.jpg", photo_bytes[: len(photo_bytes) // 2]), 0.5, 0.0, False],
        ),
        "playlist": (
            "track",
            [upload(app_url, "clip.m3u8", hostile.playlists(str(clip[0]))["playlist.m3u8"]), 0.5, 0.0],
        ),
    }
    with ThreadPoolExecutor(2) as pool:
        heavy = pool.submit(call_api, app_url, "analyse", [large, 0.01, 0.0, True], 300)
        time.sleep(1.5)  # the large photo is decoded and in the model by now
        waiting = pool.submit(call_api, app_url, "predict", [photo, 0.01, 0.0], 300)  # tiny models: low scores
        for kind, (api_name, data) in bad.items():
            started = time.perf_counter()
            event, message = call_api(app_url, api_name, data)
            seconds = time.perf_counter() - started
            assert event == "error", f"{kind} was not refused: {message}"
            assert seconds < 2, f"refusing the {kind} took {seconds:.1f} s"
        assert not heavy.done(), "the large photo finished before the refusals: this test shows nothing"
        assert heavy.result()[0] == "complete"
        event, result = waiting.result()
    assert event == "complete" and result[0]["hands"], result


def test_a_huge_request_body_is_refused_before_it_is_read(app_url: str):
    """A 200 MB data: URL sent to /predict: Gradio read and parsed the whole body before the handler refused the
    image as too large (~0.6 GB of server RAM for one request). It gets HTTP 413 now, from its Content-Length,
    and a chunked one (no Content-Length) once past the limit; the server's memory does not move."""
    from hybrid.limits import MAX_REQUEST_BODY_BYTES

    url = "data:image/png;base64," + "A" * 200_000_000
    body = json.dumps({"data": [{"url": url, "orig_name": "x.png", "meta": META}, 0.5, 0.0]}).encode()

    def chunks():
        for start in range(0, len(body), 2**20):
            yield body[start : start + 2**20]

    with hostile.peak_rss(SERVER_PIDS[app_url]) as peak:
        start = peak[0] or psutil.Process(SERVER_PIDS[app_url]).memory_info().rss
        for content in (body, chunks()):
            response = httpx.post(
                f"{app_url}gradio_api/call/predict",
                content=content,
                headers={"content-type": "application/json"},
                timeout=60,
            )
            assert response.status_code == 413, (response.status_code, response.text[:200])
            assert f"at most {MAX_REQUEST_BODY_BYTES // 2**20} MiB" in response.text
    assert peak[0] - start < 100 * 2**20, f"server RSS grew {(peak[0] - start) / 2**20:.0f} MiB"
    photo_event = call_api(app_url, "predict", [None, 0.5, 0.0])[0]  # small bodies still get through
    assert photo_event == "error"


def test_an_upload_request_holds_one_file(app_url: str):
    """Probe of issue 29: one upload request of 30 x 50 MB files was stored whole (1.5 GB of disk, kept until
    the server stopped). An upload request may now carry one file of MAX_UPLOAD (HTTP 413 past it, from its
    Content-Length), and uploads are swept after UPLOAD_MAX_AGE_SECONDS."""
    from hybrid.limits import MAX_UPLOAD

    cache = Path(get_upload_folder())
    before = {p for p in cache.rglob("*") if p.is_file()}
    files = [("files", (f"part{i}.bin", bytes(30 * 2**20))) for i in range(3)]
    response = httpx.post(f"{app_url}gradio_api/upload", files=files, timeout=60)
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert f"one file of at most {MAX_UPLOAD}" in response.text
    assert {p for p in cache.rglob("*") if p.is_file()} == before  # nothing was stored
    assert upload(app_url, "photo.jpg", b"small")["path"]  # one file still goes through


def test_playlists_and_lists_are_not_videos(app_url: str, clip, tmp_path: Path):
    """An HLS playlist or an ffconcat list naming a server clip (absolute, ../-relative, file://) or a missing
    one: FFmpeg would open what it lists and the app return that server video. Each is refused at once, with
    the same words whether the listed file exists or not, naming no server path."""
    cache = Path(get_upload_folder())
    server_clip = str(clip[0].resolve())
    targets = {
        "absolute": server_clip,
        "relative": "../" * 12 + server_clip.lstrip("/"),
        "file url": f"file://{server_clip}",
        "missing": str(tmp_path / "no-such-clip.mp4"),
    }
    answers = {}
    for target, listed in targets.items():
        for name, data in hostile.playlists(listed).items():
            started = time.perf_counter()
            event, message = call_api(app_url, "track", [upload(app_url, name, data), 0.5, 0.0])
            assert event == "error", f"{name} listing the {target} clip was tracked: {message}"
            assert time.perf_counter() - started < 2 + UPLOAD_SECONDS, "refusing a playlist took too long"
            answers[f"{name} {target}"] = message.replace(name, "NAME")
    assert len(set(answers.values())) == 1, answers
    message = next(iter(answers.values()))
    assert "not a video file" in message and str(cache) not in message and "/" not in message


def test_an_8k_clip_is_refused_at_once(app_url: str):
    """Two 8K frames: 12 s and 2.7 GB of decoding once. Refused from the header, naming the frame budget."""
    clip = upload(app_url, "eight-k.mp4", hostile.mp4((7680, 4320), 2))
    started = time.perf_counter()
    event, message = call_api(app_url, "track", [clip, 0.5, 0.0])
    assert event == "error" and "7680x4320" in message and "4K" in message, message
    assert time.perf_counter() - started < 2 + UPLOAD_SECONDS
