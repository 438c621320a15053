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

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from hybrid.limits import MAX_OUTPUT_STEM_BYTES, TEMP_NAME_BYTES

SUFFIX_BYTES = 16  # a longer "suffix" is no format's: the temp name leaves it out


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cut(text: str, size: int) -> str:
    """`text` cut to at most `size` bytes of UTF-8, never inside a character."""
    return text.encode("utf-8", "surrogateescape")[:size].decode("utf-8", "ignore")


def short_stem(stem: str, size: int = MAX_OUTPUT_STEM_BYTES) -> str:
    """`stem` when it has at most `size` bytes, else its start and a hash of the whole (two long stems that
    start alike stay apart), `size` bytes in all: a name made from it stays under the file-system limit."""
    if len(stem.encode("utf-8", "surrogateescape")) <= size:
        return stem
    digest = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{cut(stem, size - len(digest) - 1)}-{digest}"


def _temp_prefix(name: str) -> str:
    return f".{cut(name, TEMP_NAME_BYTES)}."


@contextmanager
def atomic_file(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to `path` (same suffix, so writers that pick a format by suffix work);
    on success it is renamed over `path` with mode 0666 & ~umask, on failure it is removed. The temporary name
    starts with a cut of the final one: any name the file system takes gets one it takes too."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if len(path.suffix.encode("utf-8", "surrogateescape")) <= SUFFIX_BYTES else ""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=f".tmp{suffix}")
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
    tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(target.name)}tmp-", dir=target.parent))
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
        old = target.with_name(f"{_temp_prefix(target.name)}old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_file(folder: Path | str, suffix: str) -> Iterator[Path]:
    """A new, empty temporary file in `folder` (mode 0666 & ~umask) for `link_unique`; removed when the block
    ends (its linked name stays)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".staged-", suffix=f".tmp{suffix}")
    os.close(handle)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def link_unique(folder: Path | str, stem: str, staged: Mapping[str, Path]) -> str:
    """Hard-link each written staged file (suffix -> path) as folder/STEM<suffix>, or all of them as
    STEM-1<suffix>, STEM-2<suffix>, ...: the first stem free for every suffix; returns it. A link is atomic and
    fails on any existing entry (a dangling symlink too), so nothing is replaced or written through, even by a
    concurrent run; a stem taken for one suffix is given up for all (its links made so far removed)."""
    number = 0
    while True:
        name = stem if number == 0 else f"{stem}-{number}"
        linked: list[Path] = []
        try:
            for suffix, path in staged.items():
                target = Path(folder) / f"{name}{suffix}"
                os.link(path, target)
                linked.append(target)
            return name
        except FileExistsError:
            for target in linked:
                target.unlink()
            number += 1
