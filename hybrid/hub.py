"""The Hub side: resolve a repo id or local folder to files, render model cards, push and pull."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

CARDS_DIR = Path(__file__).resolve().parent.parent / "model_cards"


def split_revision(name: str) -> tuple[str, Optional[str]]:
    """'org/name@rev' -> ('org/name', 'rev'); anything without '@' -> (name, None)."""
    if "@" in name and not Path(name).exists():
        repo, revision = name.rsplit("@", 1)
        return repo, revision or None
    return name, None


def snapshot(repo_or_dir: str | Path, revision: Optional[str] = None, allow_patterns=None) -> Path:
    """A local folder holding the model: the folder itself, or the Hub snapshot (cached; works with
    HF_HUB_OFFLINE=1 once cached)."""
    path = Path(repo_or_dir).expanduser()
    if path.is_dir():
        return path
    repo_id, at_revision = split_revision(str(repo_or_dir))
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, revision=revision or at_revision, allow_patterns=allow_patterns))


def render_card(template: str, card_data: dict, **context):
    """Render `model_cards/<template>.md` (a Jinja template) into a huggingface_hub ModelCard whose
    YAML metadata comes from `card_data` (ModelCardData fields, e.g. `eval_results`)."""
    from huggingface_hub import ModelCard, ModelCardData

    return ModelCard.from_template(
        ModelCardData(**card_data), template_path=str(CARDS_DIR / f"{template}.md"), **context
    )
