"""Session fixture: one real app server (app.py on 127.0.0.1, a free port) on the tiny trained
models, shared by tests/test_app.py and tests/test_browser.py."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 240  # seconds: imports plus model loading on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(detector: Path, classifier: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HYBRID_DETECTOR=str(detector), HYBRID_CLASSIFIER=str(classifier),
        GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
        HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def app_url(trained_detector: Path, trained_classifier: Path, tmp_path_factory) -> str:
    """URL of a running app.py; its log is printed if it fails to start."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT, env=app_env(trained_detector, trained_classifier, port))
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
        print(f"app.py log: {log_path}")
