"""Pulling: resolve a Hub repo id or a local folder to files, and the Space's model pins.

    >>> snapshot("me/gesture-classifier@v1")     # a local folder: the Hub snapshot (cached)
    >>> default_model("classifier")               # $HYBRID_CLASSIFIER, the Space's pin, else models/classifier

The Space holds `hybrid_space.json` = {"classifier": "me/gesture-classifier@<sha>", "detector": ...} (written by
`hybrid.publish.push_space`); `default_model(kind)` reads it (after $HYBRID_CLASSIFIER / $HYBRID_DETECTOR,
before models/<kind>) and accepts only that schema: the two keys, each a Hub id 'org/name' with an optional
'@revision', never a path. Pushing (model cards, push, push-space) lives in `hybrid.publish`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from hybrid.constants import KINDS, model_env, project_root

SPACE_CONFIG = "hybrid_space.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# A Space pin: 'org/name[@revision]' as push_space writes it; no '..', no leading '/' or '.', no backslash.
_NAME = r"[A-Za-z0-9](?:[\w-]|\.(?!\.))*"
PIN = re.compile(rf"{_NAME}/{_NAME}(?:@[A-Za-z0-9](?:[\w-]|[./](?![./]))*)?")


def split_revision(name: str) -> tuple[str, Optional[str]]:
    """'org/name@rev' -> ('org/name', 'rev'); anything without '@' -> (name, None)."""
    if "@" in name and not Path(name).exists():
        repo, revision = name.rsplit("@", 1)
        return repo, revision or None
    return name, None


def snapshot(repo_or_dir: str | Path, revision: Optional[str] = None, allow_patterns=None) -> Path:
    """A local folder holding the model: the folder itself, or the Hub snapshot of 'org/name[@rev]'
    (downloaded into the Hub cache; served from the cache with HF_HUB_OFFLINE=1 once there).
    A missing folder / repo / revision -> FileNotFoundError saying which."""
    path = Path(repo_or_dir).expanduser()
    if path.is_dir():
        return path
    repo_id, at_revision = split_revision(str(repo_or_dir))
    if revision and at_revision and revision != at_revision:
        raise ValueError(f"{repo_or_dir}: revision given twice ({at_revision!r} and revision={revision!r})")
    revision = revision or at_revision
    if not HUB_ID.match(repo_id):
        raise FileNotFoundError(f"{repo_or_dir}: no such model folder (and not a Hub repo id 'org/name[@rev]')")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=allow_patterns))
    except LocalEntryNotFoundError as error:
        why = (
            "HF_HUB_OFFLINE=1 forbids downloading it"
            if constants.HF_HUB_OFFLINE
            else f"the Hub ({constants.ENDPOINT}) is unreachable"
        )
        raise FileNotFoundError(
            f"{repo_or_dir}: no such local folder, and {where} is not in the Hub cache "
            f"({constants.HF_HUB_CACHE}) while {why}"
        ) from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise FileNotFoundError(
            f"{repo_or_dir}: no such local folder, and the Hub ({constants.ENDPOINT}) answered {status} for "
            f"{where}: {error.server_message or type(error).__name__}"
        ) from error


def default_model(kind: str, root: Optional[Path] = None) -> str:
    """Where the app/CLI load `kind` from: $HYBRID_<KIND>, else the Space's pin in hybrid_space.json
    (written by push_space), else the local folder models/<kind>."""
    override = model_env(kind)  # checks kind
    if override:
        return override
    root = Path(root) if root is not None else project_root()
    config = root / SPACE_CONFIG
    if config.is_file():
        pins = read_space_config(config)
        if kind not in pins:
            raise ValueError(f'{config}: field {kind!r} missing; expected {{"{kind}": "org/name@sha", ...}}')
        return pins[kind]
    return str(root / "models" / kind)


def read_space_config(path: Path) -> dict[str, str]:
    """Read and check `hybrid_space.json`: {"classifier": pin, "detector": pin} (no other field), each pin a
    Hub id 'org/name' with an optional '@revision' (matching PIN: no paths, no '..'). Bad -> one ValueError line."""
    expected = '{"classifier": "org/name@sha", "detector": "org/name@sha"}'
    try:
        pins = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); expected {expected}") from None
    if not isinstance(pins, dict) or not set(pins) <= set(KINDS):
        keys = sorted(map(str, pins)) if isinstance(pins, dict) else type(pins).__name__
        raise ValueError(f"{path}: expected only the fields {', '.join(KINDS)} ({expected}), got {keys}")
    for kind in pins:
        if not isinstance(pins[kind], str) or not PIN.fullmatch(pins[kind]):
            raise ValueError(
                f"{path}: field {kind!r} must be a Hub repo id 'org/name' or 'org/name@revision' "
                f"(not a path), got {pins[kind]!r}"
            )
    return pins
