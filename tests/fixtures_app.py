"""Session fixture: one real app server (app.py on 127.0.0.1, a free port) on the tiny trained
models, shared by tests/test_app.py and tests/test_browser.py; `running_app` starts others."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 240  # seconds: imports plus model loading on a busy 2-core machine


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
    env.update(HYBRID_DETECTOR=detector, HYBRID_CLASSIFIER=classifier, GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
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
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def app_url(trained_detector: Path, trained_classifier: Path, tmp_path_factory) -> Iterator[str]:
    """URL of app.py serving the tiny trained models (local folders)."""
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    with running_app(str(trained_detector), str(trained_classifier), log_path) as url:
        yield url
    print(f"app.py log: {log_path}")
