"""Session fixture: one real app server (app.py on 127.0.0.1, a free port) on the tiny trained
models, shared by the app tests; `running_app` starts others. `call_api` and `upload` talk to it as a bare
HTTP client does, `bomb_png` makes a 400-megapixel PNG (also used by bench/load_test.py)."""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 240  # seconds: imports plus model loading on a busy 2-core machine
# Once up, a test server may map this much more address space (RLIMIT_AS): a request that would eat the
# machine's memory fails that test (MemoryError in the server) instead of waking the kernel's OOM killer.
EXTRA_ADDRESS_SPACE = 3 * 2**30
SERVER_PIDS: dict[str, int] = {}  # URL -> the app server's process id, while it runs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(detector: str, classifier: str, log_path: Path, env: dict | None = None) -> Iterator[str]:
    """Run app.py on 127.0.0.1 and a free port with these models; yield its URL, stop it afterwards.
    Fails the test with the app's log when it does not come up."""
    port = free_port()
    env = dict(os.environ if env is None else env)
    env.update(
        HYBRID_DETECTOR=detector,
        HYBRID_CLASSIFIER=classifier,
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("HF_HUB_OFFLINE", "1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not answer on {url} within {START_TIMEOUT} s:\n{log_path.read_text()[-4000:]}")
            time.sleep(1)
        limit = psutil.Process(process.pid).memory_info().vms + EXTRA_ADDRESS_SPACE
        resource.prlimit(process.pid, resource.RLIMIT_AS, (limit, limit))
        SERVER_PIDS[url] = process.pid
        yield url
    finally:
        SERVER_PIDS.pop(url, None)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def call_api(url: str, api_name: str, data: list, timeout: float = 120) -> tuple[str, Any]:
    """Call POST /gradio_api/call/<api_name> as a bare HTTP client would (none of gradio_client's checks) and
    read the event stream up to the first answer: ("complete" | "generating", outputs) or ("error", message).
    A request the server turns away at once gives ("http <status>", body). A stream (the live webcam) is
    closed after its first frame: an open one holds the app's only model worker until its time limit."""
    with httpx.Client(timeout=timeout) as http:
        started = http.post(f"{url}gradio_api/call/{api_name}", json={"data": data})
        if started.status_code != 200:
            return f"http {started.status_code}", started.text
        event_id, event = started.json()["event_id"], ""
        with http.stream("GET", f"{url}gradio_api/call/{api_name}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "generating", "error"):
                    payload = json.loads(line.split(":", 1)[1])
                    if event == "generating":
                        http.post(f"{url}gradio_api/stream/{event_id}/close")
                    return event, payload.get("error") if event == "error" and isinstance(payload, dict) else payload
    return "closed", None


def upload(url: str, name: str, data: bytes) -> dict:
    """Upload through Gradio's own route, like the page does; the payload that then names the file."""
    with httpx.Client(timeout=120) as http:
        response = http.post(f"{url}gradio_api/upload", files={"files": (name, data)})
        response.raise_for_status()
    return {"path": response.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit grayscale PNG of side x side pixels (400 MP by default) that is ~50 kB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(9), bytes(1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def app_url(trained_detector: Path, trained_classifier: Path, tmp_path_factory) -> Iterator[str]:
    """URL of app.py serving the tiny trained models (local folders)."""
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    with running_app(str(trained_detector), str(trained_classifier), log_path) as url:
        yield url
    print(f"app.py log: {log_path}")
