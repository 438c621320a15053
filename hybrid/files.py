"""THE atomic writers: every file or folder the project writes appears whole or not at all.

A reader never sees a half-written file, a crash or kill leaves the old version in place, and what is written
gets the normal permissions of the user's umask (`mkstemp` alone would leave files at 0600).

Example:
    >>> from hybrid.files import atomic_file, write_text
    >>> with atomic_file(Path("out/metrics.json")) as tmp:
    ...     tmp.write_text("{}")
    >>> write_text(Path("out/README.md"), "# card")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to `path` (same suffix, so writers that pick a format by suffix work);
    on success it is renamed over `path` with mode 0666 & ~umask, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: Path | str, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_dir(target: Path | str, markers: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a temporary folder next to `target`; on success it replaces `target` (the old one is removed).

    An existing non-empty `target` is only replaced when it holds one of `markers` (an earlier output of the
    same writer), so a mistyped path never deletes someone's folder."""
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not any((target / m).exists() for m in markers):
        raise FileExistsError(
            f"{target} exists and is not a folder this writer made (no {' or '.join(markers)}); "
            "choose an empty or new folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~umask())
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`, removing whatever folder was there only once `new` is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)
