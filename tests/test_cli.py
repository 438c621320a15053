"""The `hybrid` command as a user meets it: every argument explained in --help, an opening line that says what
the tool does, and a quiet terminal: our own lines only, the libraries' chatter only with -v."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.test_hub import images

REPO = Path(__file__).resolve().parent.parent


def walk(parser: argparse.ArgumentParser, path: str = "hybrid"):
    """(command path, action) for every action of `parser` and of every sub-command under it."""
    for action in parser._actions:
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")


def hybrid(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hybrid.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_every_argument_of_every_command_has_help():
    from hybrid.cli import build_parser

    actions = list(walk(build_parser()))
    commands = {path for path, _ in actions}
    assert {"hybrid predict", "hybrid eval", "hybrid push", "hybrid push-space", "hybrid data stats"} <= commands
    missing = [
        f"{path}: {'/'.join(action.option_strings) or action.dest}"
        for path, action in actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert missing == []


def test_help_opens_with_what_the_tool_does_and_how_to_start():
    done = hybrid("--help")
    assert done.returncode == 0
    opening = done.stdout.split("\n\n")[1]  # after the usage line
    assert opening.startswith("Find every hand in a photo and name its gesture"), opening
    assert "hybrid predict photo.jpg" in done.stdout  # an example to start from
    assert "COMMAND --help" in done.stdout


def predict_env(tmp_path: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HYBRID_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def test_predict_prints_only_its_result(trained_detector, trained_classifier, data_root, tmp_path):
    """`hybrid predict photo.jpg` (models named by $HYBRID_*, as a user sets them): the result on stdout, stderr empty
    once the compiled networks are cached (the first run may say, on our own loggers, that it compiles them);
    -v brings the libraries' log lines back."""
    shutil.copy(images(data_root, 1)[0], tmp_path / "photo.jpg")
    env = {
        **predict_env(tmp_path),
        "HYBRID_DETECTOR": str(trained_detector),
        "HYBRID_CLASSIFIER": str(trained_classifier),
    }
    first = hybrid("predict", "photo.jpg", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert [line for line in first.stderr.splitlines() if not line.startswith("INFO hybrid.")] == []
    again = hybrid("predict", "photo.jpg", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert again.stdout.startswith("photo.jpg: ")
    assert len(again.stdout.splitlines()) == 1
    assert again.stdout == first.stdout
    verbose = hybrid("-v", "predict", "photo.jpg", cwd=tmp_path, env=env)
    assert verbose.returncode == 0, verbose.stderr
    assert "PIL.Image" in verbose.stderr  # the quiet above is the verbosity, not a silent library
    assert verbose.stdout == first.stdout
