"""The README's Python blocks run as written: against a test Hub on 127.0.0.1 that serves the ids they name
(the tiny trained models, pushed there under those ids with `hybrid push`), local `models/` folders, a real
photo as photo.jpg, and the app on the tiny models (the one rewrite: the app's port)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.hubserver import HubServer
from tests.test_hub import hybrid_cli, pushed, python_blocks, run_blocks, snippet_folder

README = Path(__file__).resolve().parent.parent / "README.md"
APP_URL = "http://127.0.0.1:7860/"  # where `make demo` serves the app
HUB_ID = re.compile(r"[\"'](org/[\w.-]+(?:@[\w.-]+)?)[\"']")


def push_as(env: dict, hub_id: str, folders: dict[str, Path]) -> None:
    """Push the fixture of the kind the id names ('...detector' or '...classifier') to that id (and revision)."""
    repo, _, revision = hub_id.partition("@")
    kind = "detector" if "detector" in repo else "classifier"
    pushed(hybrid_cli(env, "push", kind, str(folders[kind]), repo, *(["--revision", revision] if revision else [])))


def test_readme_python_blocks_run_as_written(trained_detector, trained_classifier, app_url, data_root, tmp_path):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2, "the README's Python examples went missing"
    assert sum(APP_URL in block for block in blocks) == 1  # the gradio_client example
    blocks = [block.replace(APP_URL, app_url) for block in blocks]
    ids = sorted({hub_id for block in blocks for hub_id in HUB_ID.findall(block)})
    assert ids  # the examples name Hub repos: they must load from a Hub
    folders = {"detector": trained_detector, "classifier": trained_classifier}
    work = snippet_folder(tmp_path / "work", data_root)
    for kind, folder in folders.items():
        shutil.copytree(folder, work / "models" / kind)
    with HubServer(tmp_path / "hub", orgs=("org",)) as hub:
        env = hub.client_env(tmp_path / "hf-home")
        for hub_id in ids:
            push_as(env, hub_id, folders)
        run_blocks(env, work, blocks)
