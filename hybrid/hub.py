"""The Hub side: resolve a repo id or local folder to files, render model cards, push models and the Space.

Push a trained folder (one commit: weights, config, card, metrics, TensorBoard events, card images):

    >>> push_model("classifier", "models/classifier", "me/gesture-classifier")

Push the Gradio Space, pinned to the exact commits of the two model repos:

    >>> push_space("me/hybrid", classifier="me/gesture-classifier", detector="me/hand-detector")

The Space gets `hybrid_space.json` = {"classifier": "me/gesture-classifier@<sha>", "detector": ...};
`default_model(kind)` reads it (after $HYBRID_CLASSIFIER / $HYBRID_DETECTOR, before models/<kind>) and accepts
only that schema: the two keys, each a Hub id 'org/name' with an optional '@revision', never a path.
The token comes from HF_TOKEN or the saved login (`hf auth login`) and never reaches a message, log or card.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CARDS_DIR = ROOT / "model_cards"
SPACE_CONFIG = "hybrid_space.json"
KINDS = ("classifier", "detector")
REQUIRED_FILES = {
    "classifier": ("model.safetensors", "config.json"),
    "detector": ("model.safetensors", "config.json", "best.pt"),
}
PIPELINE_TAGS = {"classifier": "image-classification", "detector": "object-detection"}
CARD_KEYS = ("library_name", "tags", "datasets", "license", "pipeline_tag")
SPACE_LICENSE = "agpl-3.0"
SPACE_SHORT_DESCRIPTION_MAX = 60
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# A Space pin: 'org/name[@revision]' as push_space writes it; no '..', no leading '/' or '.', no backslash.
_NAME = r"[A-Za-z0-9](?:[\w-]|\.(?!\.))*"
PIN = re.compile(rf"{_NAME}/{_NAME}(?:@[A-Za-z0-9](?:[\w-]|[./](?![./]))*)?")
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img\s[^>]*src=[\"']([^\"']+)[\"']", re.I)


class HubError(RuntimeError):
    """A push that failed at a named step (the message names the step, never the token)."""


# --- pull -------------------------------------------------------------------------------------

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
        why = ("HF_HUB_OFFLINE=1 forbids downloading it" if constants.HF_HUB_OFFLINE
               else f"the Hub ({constants.ENDPOINT}) is unreachable")
        raise FileNotFoundError(f"{repo_or_dir}: no such local folder, and {where} is not in the Hub cache "
                                f"({constants.HF_HUB_CACHE}) while {why}") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise FileNotFoundError(
            f"{repo_or_dir}: no such local folder, and the Hub ({constants.ENDPOINT}) answered {status} for "
            f"{where}: {error.server_message or type(error).__name__}"
        ) from error


def default_model(kind: str, root: Optional[Path] = None) -> str:
    """Where the app/CLI load `kind` from: $HYBRID_<KIND>, else the Space's pin in hybrid_space.json
    (written by push_space), else the local folder models/<kind>."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if os.environ.get(f"HYBRID_{kind.upper()}"):
        return os.environ[f"HYBRID_{kind.upper()}"]
    root = Path(root) if root is not None else ROOT
    config = root / SPACE_CONFIG
    if config.is_file():
        pins = read_space_config(config)
        if kind not in pins:
            raise ValueError(f"{config}: field {kind!r} missing; expected {{\"{kind}\": \"org/name@sha\", ...}}")
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
            raise ValueError(f"{path}: field {kind!r} must be a Hub repo id 'org/name' or 'org/name@revision' "
                             f"(not a path), got {pins[kind]!r}")
    return pins


# --- cards ------------------------------------------------------------------------------------

def render_card(template: str, card_data: dict, **context):
    """Render `model_cards/<template>.md` (a Jinja template) into a huggingface_hub ModelCard whose
    YAML metadata comes from `card_data` (ModelCardData fields, e.g. `eval_results`)."""
    from huggingface_hub import ModelCard, ModelCardData

    return ModelCard.from_template(
        ModelCardData(**card_data), template_path=str(CARDS_DIR / f"{template}.md"), **context
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def fine_tuned_from(folder: Path) -> Optional[str]:
    """The base model a trained folder was fine-tuned from: `base_model` in config.json or metrics.json."""
    for name in ("config.json", "metrics.json"):
        if (folder / name).is_file():
            base = _read_json(folder / name).get("base_model")
            if base:
                return str(base)
    return None


def check_model_card(kind: str, folder: Path):
    """Load folder/README.md and check its metadata locally; returns the ModelCard.
    Problems -> ValueError naming README.md and the field."""
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    readme = folder / "README.md"
    if not readme.is_file():
        raise ValueError(f"{readme}: missing; a pushed model needs its model card")
    try:
        data = metadata_load(readme) or {}
    except Exception as error:  # YAML errors come in several types
        raise ValueError(f"{readme}: the YAML metadata does not parse: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{readme}: the YAML metadata must be a mapping")
    missing = [key for key in CARD_KEYS if not data.get(key)]
    if missing:
        raise ValueError(f"{readme}: metadata lacks {', '.join(missing)}")
    if data["pipeline_tag"] != PIPELINE_TAGS[kind]:
        raise ValueError(f"{readme}: pipeline_tag is {data['pipeline_tag']!r}, a {kind} needs {PIPELINE_TAGS[kind]!r}")
    model_index = data.get("model-index")
    if not model_index:
        raise ValueError(f"{readme}: metadata lacks model-index (the evaluation results)")
    try:
        _, results = model_index_to_eval_results(model_index)
    except Exception as error:
        raise ValueError(f"{readme}: model-index does not parse: {type(error).__name__}: {error}") from error
    for result in results:
        if isinstance(result.metric_value, bool) or not isinstance(result.metric_value, (int, float)):
            raise ValueError(f"{readme}: model-index metric {result.metric_type!r} has non-numeric value "
                             f"{result.metric_value!r}")
    base = fine_tuned_from(folder)
    if base:
        declared = data.get("base_model")
        declared = [declared] if isinstance(declared, str) else (declared or [])
        if base not in declared:
            raise ValueError(f"{readme}: the model was fine-tuned from {base!r} but base_model is {declared or 'missing'}")
    return ModelCard.load(readme)


def card_images(folder: Path, card_text: str) -> list[Path]:
    """Local images the card shows (markdown or <img>); a missing one -> ValueError."""
    images = []
    for match in IMAGE_LINK.finditer(card_text):
        link = match.group(1) or match.group(2)
        if re.match(r"^[a-z]+:", link, re.I) or link.startswith("#"):
            continue  # http(s)/data URLs
        path = (folder / link.split("#")[0].split("?")[0]).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise ValueError(f"{folder / 'README.md'}: image {link!r} lies outside the model folder")
        if not path.is_file():
            raise ValueError(f"{folder / 'README.md'}: image {link!r} does not exist")
        images.append(path)
    return images


LOG_DIRS = ("runs", "logs")  # TensorBoard log folders: pushed whole (events, results.csv, args, plots)
PICKLES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tmp")


def files_to_push(kind: str, folder: Path, card_text: str) -> list[Path]:
    """What a push uploads: the top-level files (weights, config.json, metrics.json, README.md, ...; no hidden
    files, no pickles other than the required best.pt), everything in runs/ and logs/, every TensorBoard event
    file (*tfevents*) elsewhere, and the images the card shows. Not pushed: checkpoints/ and other folders."""
    folder = Path(folder)

    def wanted(path: Path) -> bool:
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") or part == "__pycache__" for part in parts) or not path.is_file():
            return False
        return path.suffix not in PICKLES or (len(parts) == 1 and path.name in REQUIRED_FILES[kind])

    files = {p for p in folder.iterdir() if wanted(p)}
    for name in LOG_DIRS:
        if (folder / name).is_dir():
            files.update(p for p in (folder / name).rglob("*") if wanted(p))
    files.update(p for p in folder.rglob("*tfevents*") if wanted(p) and "checkpoints" not in p.relative_to(folder).parts)
    files.update(card_images(folder, card_text))
    return sorted({p.resolve() for p in files})


def check_model_folder(kind: str, folder: str | Path) -> Path:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    missing = [name for name in REQUIRED_FILES[kind] if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder}: a {kind} folder needs {', '.join(REQUIRED_FILES[kind])}; missing {', '.join(missing)}")
    if not (folder / "metrics.json").is_file():
        raise ValueError(f"{folder}: missing metrics.json (the evaluation results the card reports)")
    _read_json(folder / "config.json")
    _read_json(folder / "metrics.json")
    return folder


# --- push -------------------------------------------------------------------------------------

def _token(token: Optional[str]) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    return token


@contextmanager
def _step(what: str, target: str, token: str) -> Iterator[None]:
    """Turn any failure inside into one HubError naming the target and the step."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except HubError:
        raise
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        detail = error.server_message or str(error).splitlines()[0]
        hint = {
            401: "the token was rejected: set HF_TOKEN to a valid write token or run `hf auth login`",
            403: "the token may not write there (wrong namespace or a read-only token)",
        }.get(status, "")
        message = f"push to {target} failed while {what}: HTTP {status}: {detail}" + (f" ({hint})" if hint else "")
        raise HubError(message.replace(token, "***")) from error
    except ValueError as error:  # e.g. the Hub rejected the card metadata
        raise ValueError(f"push to {target} failed while {what}: {str(error).replace(token, '***')}") from error
    except Exception as error:  # network and I/O errors
        from huggingface_hub import constants

        message = f"push to {target} failed while {what}: {type(error).__name__}: {error} (endpoint {constants.ENDPOINT})"
        raise HubError(message.replace(token, "***")) from error


def _refuse_token_in_files(files: list[Path], token: str) -> None:
    needle = token.encode()
    for path in files:
        if path.suffix in (".safetensors", ".pt"):
            continue
        if needle in path.read_bytes():
            raise HubError(f"refusing to push: {path} contains your Hub token")


def _commit(api, repo_id: str, repo_type: str, operations: list, revision: Optional[str], message: str,
            private: bool, token: str, space_sdk: Optional[str] = None):
    target = f"{repo_id}@{revision}" if revision else repo_id
    with _step("creating the repository", target, token):
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
    if revision and revision != "main":
        with _step(f"creating branch {revision!r}", target, token):
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    with _step("uploading the commit", target, token):
        info = api.create_commit(repo_id, operations, repo_type=repo_type, revision=revision, commit_message=message)
    logger.info("pushed %d files to %s: %s", len(operations), target, info.commit_url)
    return info


def push_model(kind: str, folder: str | Path, repo_id: str, private: bool = False, revision: Optional[str] = None,
               commit_message: Optional[str] = None, token: Optional[str] = None):
    """Push a trained classifier/detector folder to `repo_id` in ONE commit; returns the CommitInfo
    (`.oid` is the commit sha to pin). The folder is only read. Bad folder or card -> ValueError before
    anything is sent; a Hub failure -> HubError naming the step."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = check_model_folder(kind, folder)
    card = check_model_card(kind, folder)
    files = files_to_push(kind, folder, card.content)
    token = _token(token)
    _refuse_token_in_files(files, token)
    api = HfApi(token=token)
    with _step("validating the model card metadata", repo_id, token):
        card.validate(repo_type="model")
    root = folder.resolve()
    operations = [CommitOperationAdd(path_in_repo=p.relative_to(root).as_posix(), path_or_fileobj=str(p)) for p in files]
    message = commit_message or f"Upload {kind} ({len(files)} files)"
    return _commit(api, repo_id, "model", operations, revision, message, private, token)


def pin_revision(repo: str, token: Optional[str] = None, target: Optional[str] = None) -> str:
    """'org/name[@rev]' -> 'org/name@<commit sha>' (the exact commit `rev` points at now)."""
    from huggingface_hub import HfApi

    repo_id, revision = split_revision(repo)
    with _step(f"resolving model {repo} to a commit", target or repo, token or "\0"):
        sha = HfApi(token=token).model_info(repo_id, revision=revision).sha
    return f"{repo_id}@{sha}"


def _gradio_pin(requirements: Path) -> str:
    for line in requirements.read_text().splitlines():
        match = re.match(r"^\s*gradio\s*==\s*([\w.]+)", line)
        if match:
            return match.group(1)
    raise ValueError(f"{requirements}: no pinned gradio==X.Y.Z (the Space's sdk_version comes from it)")


def space_card(source_dir: Path, models: list[str]):
    """The Space README: the project README's front matter and text, with sdk_version = the pinned gradio
    and `models` = the two repos."""
    from huggingface_hub import SpaceCard

    readme = source_dir / "README.md"
    card = SpaceCard.load(readme) if readme.is_file() else SpaceCard(
        "---\n---\n# hybrid: hand-gesture recognition\n")
    data = card.data
    data.title = data.title or "hybrid hand gestures"
    data.sdk = "gradio"
    data.sdk_version = _gradio_pin(source_dir / "requirements.txt")
    data.app_file = "app.py"
    data.python_version = str(data.python_version or f"{sys.version_info.major}.{sys.version_info.minor}")
    data.license = SPACE_LICENSE
    data.models = models
    short = getattr(data, "short_description", None) or "YOLOv8 finds hands, ResNet-50 names gestures"
    if len(short) > SPACE_SHORT_DESCRIPTION_MAX:
        raise ValueError(f"{readme}: short_description has {len(short)} characters, the Hub allows "
                         f"{SPACE_SHORT_DESCRIPTION_MAX}")
    data.short_description = short
    return card


def push_space(repo_id: str, classifier: str, detector: str, private: bool = False, token: Optional[str] = None,
               source_dir: Optional[str | Path] = None, commit_message: Optional[str] = None):
    """Push the Gradio Space (app.py, hybrid/, requirements.txt, LICENSE, README.md with the Space config,
    hybrid_space.json pinning both models to their current commit) in one commit; returns the CommitInfo."""
    from huggingface_hub import CommitOperationAdd, HfApi

    source = Path(source_dir) if source_dir is not None else ROOT
    for name in ("app.py", "requirements.txt"):
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source / name}: missing; the Space needs it")
    token = _token(token)
    pins = {kind: pin_revision(repo, token, target=repo_id)
            for kind, repo in (("classifier", classifier), ("detector", detector))}
    card = space_card(source, [split_revision(pins["classifier"])[0], split_revision(pins["detector"])[0]])
    with _step("validating the Space README metadata", repo_id, token):
        card.validate(repo_type="space")
    files = [source / "app.py", source / "requirements.txt"]
    files += [source / "LICENSE"] if (source / "LICENSE").is_file() else []
    files += sorted(p for p in (source / "hybrid").rglob("*.py") if "__pycache__" not in p.parts)
    _refuse_token_in_files(files, token)
    operations = [CommitOperationAdd(p.relative_to(source).as_posix(), str(p)) for p in files]
    operations.append(CommitOperationAdd("README.md", str(card).encode()))
    operations.append(CommitOperationAdd(SPACE_CONFIG, (json.dumps(pins, indent=2) + "\n").encode()))
    message = commit_message or f"Space pinned to {pins['classifier']} and {pins['detector']}"
    api = HfApi(token=token)
    info = _commit(api, repo_id, "space", operations, None, message, private, token, space_sdk="gradio")
    logger.info("Space %s pins %s", repo_id, pins)
    return info


# --- CLI --------------------------------------------------------------------------------------

def _quiet_http_logs() -> None:
    """One INFO line per HTTP request drowns the push summary; keep them for -v (DEBUG)."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)


def push_command(args: argparse.Namespace) -> int:
    _quiet_http_logs()
    try:
        info = push_model(args.kind, args.folder, args.repo_id, private=args.private, revision=args.revision,
                          commit_message=args.commit_message)
    except HubError as error:
        logger.error("%s", error)
        return 1
    sys.stdout.write(f"{args.repo_id}@{info.oid}\n")
    return 0


def push_space_command(args: argparse.Namespace) -> int:
    _quiet_http_logs()
    try:
        info = push_space(args.repo_id, classifier=args.classifier, detector=args.detector, private=args.private)
    except HubError as error:
        logger.error("%s", error)
        return 1
    sys.stdout.write(f"{args.repo_id}@{info.oid}\n")
    return 0
