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
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from hybrid.constants import KINDS, model_env, project_root
from hybrid.limits import MAX_WEIGHT

if TYPE_CHECKING:
    from torch import nn

SPACE_CONFIG = "hybrid_space.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# A Space pin: 'org/name[@revision]' as push_space writes it; no '..', no leading '/' or '.', no backslash.
_NAME = r"[A-Za-z0-9](?:[\w-]|\.(?!\.))*"
PIN = re.compile(rf"{_NAME}/{_NAME}(?:@[A-Za-z0-9](?:[\w-]|[./](?![./]))*)?")


def split_revision(name: str, local: bool = True) -> tuple[str, Optional[str]]:
    """'org/name@rev' -> ('org/name', 'rev'); anything without '@' (or, when `local`, an existing path with one)
    -> (name, None)."""
    if "@" in name and not (local and Path(name).exists()):
        repo, revision = name.rsplit("@", 1)
        return repo, revision or None
    return name, None


def snapshot(repo_or_dir: str | Path, revision: Optional[str] = None, allow_patterns=None, local: bool = True) -> Path:
    """A local folder holding the model: the folder itself, or the Hub snapshot of 'org/name[@rev]'
    (downloaded into the Hub cache; served from the cache with HF_HUB_OFFLINE=1 once there). `local=False`: a Hub
    id only, even where a local folder of that name exists (a Space pin). A missing folder / repo / revision ->
    FileNotFoundError saying which."""
    path = Path(repo_or_dir).expanduser()
    if local and path.is_dir():
        return path
    repo_id, at_revision = split_revision(str(repo_or_dir), local)
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


def resolve_model(kind: str, root: Optional[Path] = None) -> tuple[str, Path]:
    """(`default_model(kind)`, the local folder holding it). A Space pin is resolved as a Hub id only: a folder
    that happens to bear the pin's name (`org/name@sha` under the working directory) is never loaded instead."""
    name, pinned = model_choice(kind, root)
    return name, snapshot(name, local=not pinned)


def default_model(kind: str, root: Optional[Path] = None) -> str:
    """Where the app/CLI load `kind` from: $HYBRID_<KIND>, else the Space's pin in hybrid_space.json
    (written by push_space), else the local folder models/<kind>."""
    return model_choice(kind, root)[0]


def model_choice(kind: str, root: Optional[Path] = None) -> tuple[str, bool]:
    """`default_model`'s answer, and whether it is a Space pin (to resolve as a Hub id only: `resolve_model`)."""
    override = model_env(kind)  # checks kind
    if override:
        return override, False
    root = Path(root) if root is not None else project_root()
    config = root / SPACE_CONFIG
    if config.is_file():
        pins = read_space_config(config)
        if kind not in pins:
            raise ValueError(f'{config}: field {kind!r} missing; expected {{"{kind}": "org/name@sha", ...}}')
        return pins[kind], True
    return str(root / "models" / kind), False


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


# --- reading a model folder's files (hybrid.detector, hybrid.classifier) ---------------------------------------


def model_file(path: Path) -> Path:
    """`path`, a file of a model folder, checked before anything opens it: a regular file (a folder cannot be
    read, a FIFO would block the read) and, where it is a symlink, one to a file inside its folder or, in a Hub
    cache snapshot (`.../snapshots/<rev>/`), inside that repo's `blobs/`. Any other symlink is refused: the folder
    holds the repo's files, and a link out of it (a git clone keeps links) would load a file the repo does not
    hold. Missing -> FileNotFoundError; anything else -> one ValueError line naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    folder, target = path.parent.resolve(), path.resolve()
    roots = [folder] + ([folder.parent.parent / "blobs"] if folder.parent.name == "snapshots" else [])
    if not any(target.is_relative_to(root) for root in roots):
        raise ValueError(f"{path}: a symlink to a file outside its model folder; copy the file into the folder")
    return path


def read_model_json(path: Path) -> dict:
    """A model's `config.json` as a dict (see `model_file`): UTF-8 JSON of at most MAX_MODEL_JSON_BYTES, an
    object, nested at most MAX_MODEL_JSON_DEPTH levels. Missing -> FileNotFoundError; else one ValueError line."""
    from hybrid.limits import MAX_MODEL_JSON_BYTES, MAX_MODEL_JSON_DEPTH

    path = model_file(path)
    with path.open("rb") as handle:
        data = handle.read(MAX_MODEL_JSON_BYTES + 1)
    if len(data) > MAX_MODEL_JSON_BYTES:
        raise ValueError(f"{path}: over the limit of {MAX_MODEL_JSON_BYTES / 1e6:g} MB for a model config")
    try:
        config = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit int
        why = "nested too deeply" if isinstance(error, RecursionError) else (str(error).strip() or "?").splitlines()[0]
        raise ValueError(f"{path}: not valid JSON ({why})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object, got a {type(config).__name__}")
    if _nesting(config) > MAX_MODEL_JSON_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_MODEL_JSON_DEPTH} levels")
    return config


def _nesting(value: object) -> int:
    """How many levels of lists and dicts `value` nests (without recursing)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_safetensors_header(path: Path) -> Path:
    """Refuse a safetensors file whose JSON header is over MAX_MODEL_JSON_BYTES (ours are ~20 KB) before the
    library parses it: 3 M metadata keys in 50 MB (under its own 100 MB cap) took 16 s and 1.5 GB, or aborted
    the process under a memory limit."""
    from hybrid.limits import MAX_MODEL_JSON_BYTES

    with open(path, "rb") as file:
        head = file.read(8)
        size = os.fstat(file.fileno()).st_size
    length = int.from_bytes(head, "little") if len(head) == 8 else 0
    if len(head) < 8 or length > size - 8:
        raise ValueError(f"{path}: not a safetensors file (its header length runs past the end of the file)")
    if length > MAX_MODEL_JSON_BYTES:
        raise ValueError(f"{path}: a safetensors header of {length:,} bytes (at most {MAX_MODEL_JSON_BYTES:,})")
    return path


def load_weights(path: Path, model: "nn.Module", config: str = "config.json") -> None:
    """Load the safetensors file `path` into `model` (strictly), or fail with one ValueError line naming the file
    and the tensor: not a safetensors file; a tensor missing, extra, or of another shape or kind than the network
    `config` describes (all from the header, before any data is read); a tensor holding NaN or infinity."""
    import torch
    from safetensors import SafetensorError, safe_open

    path = check_safetensors_header(model_file(path))
    expected = model.state_dict()
    mismatch = f"{path}: weights do not match the network {config} describes:"
    try:
        with safe_open(str(path), framework="pt") as weights:
            names = set(weights.keys())
            odd = sorted(expected.keys() - names) + sorted(names - expected.keys())
            if odd:
                why = "missing" if odd[0] in expected else "is not part of it"
                raise ValueError(f"{mismatch} tensor {odd[0]!r} {why} ({len(odd)} name(s) differ)")
            for name, tensor in expected.items():
                shape = list(weights.get_slice(name).get_shape())
                if shape != list(tensor.shape):
                    raise ValueError(f"{mismatch} tensor {name!r} has shape {shape}, not {list(tensor.shape)}")
            state = {name: weights.get_tensor(name) for name in expected}
    except SafetensorError as error:
        raise ValueError(
            f"{path}: not a safetensors file ({(str(error).strip() or 'unreadable').splitlines()[0]})"
        ) from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() != expected[name].is_floating_point():
            raise ValueError(f"{mismatch} tensor {name!r} is {tensor.dtype}, not {expected[name].dtype}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{path}: tensor {name!r} holds NaN or infinite values")
        if tensor.is_floating_point() and tensor.numel() and tensor.abs().max() > MAX_WEIGHT:
            raise ValueError(f"{path}: tensor {name!r} holds values over {MAX_WEIGHT:g} (they overflow to NaN)")
        if name.endswith("running_var") and tensor.numel() and tensor.min() < 0:  # sqrt(var) would be NaN
            raise ValueError(f"{path}: tensor {name!r} (a variance) holds negative values")
    model.load_state_dict(state, strict=True)
