"""Publishing: render model cards, push a trained folder, push the Gradio Space.

Push a trained folder (one commit of an allowlist: weights, config, card, metrics, split, recipe, TensorBoard logs,
the card's images; anything else in the folder refuses the push, see `hybrid.publish_checks`):

    >>> push_model("classifier", "models/classifier", "me/gesture-classifier")

Push the Gradio Space, pinned to the exact commits of the two model repos:

    >>> push_space("me/hybrid", classifier="me/gesture-classifier", detector="me/hand-detector")

Card templates are `model_cards/<kind>.md` in the checkout, shipped in the wheel as `hybrid.model_cards`.
The token comes from HF_TOKEN or the saved login (`hf auth login`) and never reaches a message, log or card: every
pushed file is searched for it (binary ones too, in its common encodings, inside compressed streams) and a find
refuses the push. Pushed copies carry no absolute local path (rewritten, or the push is refused); the folder
itself is only read.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator, Optional

from hybrid.constants import KINDS, project_root
from hybrid.hub import SPACE_CONFIG, split_revision
from hybrid.publish_checks import (  # noqa: F401 (card_images: part of this module's API)
    PathRewriter,
    card_images,
    files_to_push,
    neutral_payload,
    refuse_local_paths,
    refuse_token,
    space_files,
)
from hybrid.yamlfile import parse_yaml

logger = logging.getLogger(__name__)

REQUIRED_FILES = {
    "classifier": ("model.safetensors", "config.json"),
    "detector": ("model.safetensors", "config.json", "best.pt"),
}
PIPELINE_TAGS = {"classifier": "image-classification", "detector": "object-detection"}
CARD_KEYS = ("library_name", "tags", "datasets", "license", "pipeline_tag")
SPACE_LICENSE = "agpl-3.0"
SPACE_SHORT_DESCRIPTION_MAX = 60


class HubError(RuntimeError):
    """A push that failed at a named step (the message names the step, never the token)."""


# --- cards ------------------------------------------------------------------------------------


def render_card(template: str, card_data: dict, **context):
    """Render `model_cards/<template>.md` (a Jinja template) into a huggingface_hub ModelCard whose
    YAML metadata comes from `card_data` (ModelCardData fields, e.g. `eval_results`). Its usage snippets
    (`{{ usage }}`) load the trained folder (`recipe.output`) until `push_model` names the repo in them."""
    from huggingface_hub import ModelCard, ModelCardData

    recipe = context.get("recipe") or {}
    context.setdefault(
        "usage", usage_section(template, folder=recipe.get("output"), image_size=recipe.get("image_size"))
    )
    context.setdefault("generalization", card_template("generalization").strip())  # bench/generalize.py wrote it
    text = card_template(template)
    return ModelCard.from_template(ModelCardData(**card_data), template_str=text, **context)


USAGE_START, USAGE_END = "<!-- hybrid:usage -->", "<!-- /hybrid:usage -->"
USAGE_SECTION = re.compile(re.escape(USAGE_START) + ".*?" + re.escape(USAGE_END), re.S)
PLACEHOLDERS = ("<this repo>", "<org>/<repo>", "path/to/this/folder")  # what cards said before they were pushed


def usage_section(
    kind: str,
    repo: Optional[str] = None,
    revision: Optional[str] = None,
    folder: Optional[str] = None,
    image_size: Optional[int] = None,
) -> str:
    """The usage snippets of a `kind` card (`model_cards/<kind>-usage.md`) between two markers that
    `card_for_repo` finds again: they load Hub `repo` at `revision` ('main' or None: the default branch),
    else the local `folder`."""
    from jinja2 import Template

    text = Template(card_template(f"{kind}-usage")).render(
        repo=repo, revision=None if revision in (None, "main") else revision, folder=folder, image_size=image_size
    )
    return f"{USAGE_START}\n{text.strip()}\n{USAGE_END}"


def card_for_repo(kind: str, folder: Path, repo_id: str, revision: Optional[str] = None) -> str:
    """The text of folder/README.md as pushed to `repo_id`@`revision`: every usage snippet names the repo
    (a card written before the markers existed gets its placeholders replaced). A placeholder left -> ValueError."""
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8")
    image_size = _read_json(folder / "config.json").get("image_size")
    usage = usage_section(kind, repo=repo_id, revision=revision, image_size=image_size)
    text, replaced = USAGE_SECTION.subn(lambda _: usage, text)
    if not replaced:
        for placeholder in PLACEHOLDERS:
            text = text.replace(placeholder, repo_id)
    left = [placeholder for placeholder in PLACEHOLDERS if placeholder in text]
    if left:
        raise ValueError(f"{readme}: the card still says {left[0]!r} outside its usage section; name the repo there")
    return text


def card_template(name: str) -> str:
    """The text of template `name` ('classifier' | 'detector'), read from the installed package."""
    template = resources.files("hybrid.model_cards") / f"{name}.md"
    if not template.is_file():
        raise FileNotFoundError(f"no model card template {name!r} (expected hybrid.model_cards/{name}.md)")
    return template.read_text(encoding="utf-8")


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


FRONT_MATTER = re.compile(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)", re.S)


def check_model_card(kind: str, folder: Path):
    """Load folder/README.md and check its metadata locally; returns the ModelCard.
    Problems -> ValueError naming README.md and the field."""
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    readme = folder / "README.md"
    if not readme.is_file():
        raise ValueError(f"{readme}: missing; a pushed model needs its model card")
    front = FRONT_MATTER.match(readme.read_text(encoding="utf-8", errors="replace"))
    if front:  # huggingface_hub's YAML parser expands aliases: a 500-byte "billion laughs" is gigabytes
        parse_yaml(front.group(1), f"{readme}: the YAML metadata does not parse")
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
            raise ValueError(
                f"{readme}: model-index metric {result.metric_type!r} has non-numeric value {result.metric_value!r}"
            )
    base = fine_tuned_from(folder)
    if base:
        declared = data.get("base_model")
        declared = [declared] if isinstance(declared, str) else (declared or [])
        if base not in declared:
            raise ValueError(
                f"{readme}: the model was fine-tuned from {base!r} but base_model is {declared or 'missing'}"
            )
    return ModelCard.load(readme)


def check_model_folder(kind: str, folder: str | Path) -> Path:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    missing = [name for name in REQUIRED_FILES[kind] if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"{folder}: a {kind} folder needs {', '.join(REQUIRED_FILES[kind])}; missing {', '.join(missing)}"
        )
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

        message = (
            f"push to {target} failed while {what}: {type(error).__name__}: {error} (endpoint {constants.ENDPOINT})"
        )
        raise HubError(message.replace(token, "***")) from error


def checked_payloads(
    files: list[Path], root: Path, token: str, paths: Optional[PathRewriter] = None, extra: Optional[dict] = None
) -> dict[str, bytes | str]:
    """{path in the repo: what to upload} for `files` (under `root`) and the generated `extra` {path: bytes}:
    each file's pushed copy with its local paths rewritten (`paths`; bytes when that changed it, else the file's
    path), every payload checked for the token and, with `paths`, for a local path left. A find -> ValueError
    naming the file; nothing has been sent then."""
    payloads: dict[str, bytes | str] = {}
    for path in files:
        relative = path.relative_to(root).as_posix()
        data = path.read_bytes()
        pushed = neutral_payload(relative, data, paths) if paths else data
        if pushed != data:
            logger.info("%s: local paths rewritten in the pushed copy (the folder is unchanged)", relative)
        payloads[relative] = pushed if pushed != data else str(path)
        _check_payload(relative, pushed, token, paths)
    for relative, data in (extra or {}).items():
        payloads[relative] = neutral_payload(relative, data, paths) if paths else data
        _check_payload(relative, payloads[relative], token, paths)
    return payloads


def _check_payload(relative: str, data: bytes, token: str, paths: Optional[PathRewriter]) -> None:
    refuse_token(relative, data, token)
    if paths:
        refuse_local_paths(relative, data, paths)


def _commit(
    api,
    repo_id: str,
    repo_type: str,
    operations: list,
    revision: Optional[str],
    message: str,
    private: bool,
    token: str,
    space_sdk: Optional[str] = None,
):
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


def push_model(
    kind: str,
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: Optional[str] = None,
    commit_message: Optional[str] = None,
    token: Optional[str] = None,
):
    """Push a trained classifier/detector folder to `repo_id` in ONE commit; returns the CommitInfo
    (`.oid` is the commit sha to pin). The card's usage snippets are written for `repo_id`@`revision`
    (`card_for_repo`); the folder is only read. Sent: the allowlist of `files_to_push`, as copies with their local
    paths rewritten (`hybrid.publish_checks`). Bad folder or card, a file outside the allowlist, the token or a
    local path left in a file -> ValueError (one line naming the file) before anything is sent; a Hub failure ->
    HubError naming the step."""
    from huggingface_hub import CommitOperationAdd, HfApi

    given = Path(folder).expanduser()
    folder = check_model_folder(kind, folder)
    card = check_model_card(kind, folder)
    root = folder.resolve()
    token = _token(token)
    files = [p for p in files_to_push(kind, folder, card.content, token) if p != root / "README.md"]
    card_text = card_for_repo(kind, folder, repo_id, revision)
    paths = PathRewriter(root, given)
    payloads = checked_payloads(files, root, token, paths, extra={"README.md": card_text.encode("utf-8")})
    api = HfApi(token=token)
    with _step("validating the model card metadata", repo_id, token):
        card.validate(repo_type="model")
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in payloads.items()]
    message = commit_message or f"Upload {kind} ({len(operations)} files)"
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
    card = SpaceCard.load(readme) if readme.is_file() else SpaceCard("---\n---\n# hybrid: hand-gesture recognition\n")
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
        raise ValueError(
            f"{readme}: short_description has {len(short)} characters, the Hub allows {SPACE_SHORT_DESCRIPTION_MAX}"
        )
    data.short_description = short
    return card


def push_space(
    repo_id: str,
    classifier: str,
    detector: str,
    private: bool = False,
    token: Optional[str] = None,
    source_dir: Optional[str | Path] = None,
    commit_message: Optional[str] = None,
):
    """Push the Gradio Space (app.py, hybrid/, requirements.txt, LICENSE, README.md with the Space config,
    hybrid_space.json pinning both models to their current commit) in one commit; returns the CommitInfo.
    From a git checkout hybrid/ sends only the .py files git tracks (`space_files`). A symlink or an untracked .py
    file there, the token in a file (`refuse_token`) or a local path (`refuse_local_paths`) -> ValueError naming
    the files before anything is sent."""
    from huggingface_hub import CommitOperationAdd, HfApi

    source = Path(source_dir) if source_dir is not None else project_root()
    for name in ("app.py", "requirements.txt"):
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source / name}: missing; the Space needs it")
    token = _token(token)
    files = space_files(source)
    paths = PathRewriter(source)
    payloads = checked_payloads(files, source, token, paths)  # before anything is sent (pinning asks the Hub)
    pins = {
        kind: pin_revision(repo, token, target=repo_id)
        for kind, repo in (("classifier", classifier), ("detector", detector))
    }
    card = space_card(source, [split_revision(pins["classifier"])[0], split_revision(pins["detector"])[0]])
    extra = {"README.md": str(card).encode(), SPACE_CONFIG: (json.dumps(pins, indent=2) + "\n").encode()}
    payloads.update(checked_payloads([], source, token, paths, extra=extra))
    with _step("validating the Space README metadata", repo_id, token):
        card.validate(repo_type="space")
    operations = [CommitOperationAdd(p, data) for p, data in payloads.items()]
    message = commit_message or f"Space pinned to {pins['classifier']} and {pins['detector']}"
    api = HfApi(token=token)
    info = _commit(api, repo_id, "space", operations, None, message, private, token, space_sdk="gradio")
    logger.info("Space %s pins %s", repo_id, pins)
    return info
