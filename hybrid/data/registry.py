"""Registered public datasets: where each comes from, its licence, and the attribution to cite.

Model cards cite `attribution(name)` and `licence(name)`. `fetch(name)` downloads the GitHub archive
of the pinned commit for users who have internet (this project's build machine has none).

Checksums: GitHub builds archives on the fly, and we could not download them from here, so no
sha256 is recorded yet (`sha256=None`). `fetch` then says so in a warning and logs the sha256 it
computed, to be checked and recorded in `REGISTRY`; when a sha256 is recorded, a mismatch is an
error and nothing is kept.

Note that the shared folder `subhih-handsdataset` is a 954-image subset (see SOURCES.md); `fetch`
brings the whole upstream repository.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hybrid.constants import data_root
from hybrid.files import replace_dir

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    folder: str  # local folder name under the data root
    repo: str  # GitHub owner/name
    commit: str
    licence: str  # SPDX id
    attribution: str
    format: str
    subdirs: tuple[str, ...] = ()  # where the annotated data sits inside the folder (default: all of it)
    label_prefix: str = ""
    keep_labels: tuple[str, ...] = ()  # read only these labels (a view of a set); empty: all
    sha256: Optional[str] = None

    @property
    def url(self) -> str:
        return f"https://codeload.github.com/{self.repo}/zip/{self.commit}"

    @property
    def origin(self) -> str:
        return f"https://github.com/{self.repo}/tree/{self.commit}"


SIGN_DIGITS = DatasetInfo(
    name="sign-digits",
    folder="sign-language-digits",
    repo="ardamavi/Sign-Language-Digits-Dataset",
    commit="4b09433ef9d5c60602e8805bb54b8aa2428527f8",
    licence="Apache-2.0",
    attribution=(
        "Sign Language Digits Dataset by Turkey Ankara Ayrancı Anadolu High School students "
        "(project leads Zeynep Dikle and Arda Mavi), https://github.com/ardamavi/Sign-Language-Digits-Dataset, "
        'Apache License 2.0. Cite: Mavi, A. (2020), "A New Dataset and Proposed Convolutional Neural Network '
        'Architecture for Classification of American Sign Language Digits", arXiv:2011.08927.'
    ),
    format="imagefolder",
    subdirs=("Dataset",),
    label_prefix="asl-",  # ASL digit signs, not finger counts: see hybrid/data/labels.py
)

REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="hands",
            folder="subhih-handsdataset",
            repo="SubhiH/HandsDataset",
            commit="73228cb5ba6a8d454663aa9873157862b69a1c4c",
            licence="Apache-2.0",
            attribution=("Hands Dataset by Soubhi Hadri (https://github.com/SubhiH/HandsDataset), Apache License 2.0."),
            format="voc",
            # upstream also keeps byte-identical duplicates at the images/ top level: read the split folders only
            subdirs=("images/train", "images/test"),
        ),
        DatasetInfo(
            name="roboflow",
            folder="roboflow-hand-gesture-recognition-v6",
            repo="dwivedi1997/Hand-Gesture-YOLOv8",
            commit="fd632313b9d74d869f57b11a8b0bb249cbc537ae",
            licence="CC-BY-4.0",
            attribution=(
                'Hand Gesture Recognition v6 (2023-03-18), Roboflow Universe workspace "lebanese-university-grkoz", '
                'project "hand-gesture-recognition-y5827" '
                "(https://universe.roboflow.com/lebanese-university-grkoz/hand-gesture-recognition-y5827), "
                "provided by a Roboflow user under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); "
                "redistributed on GitHub by Aniket Dwivedi (https://github.com/dwivedi1997/Hand-Gesture-YOLOv8)."
            ),
            format="yolo",
        ),
        SIGN_DIGITS,
        # The same images seen as finger counts: ASL digits 1-5 extend one to five fingers (1 index, 2 index +
        # middle, 3 thumb + index + middle, 4 four fingers, 5 open palm), so they mean what the Hands and
        # Roboflow labels '1'..'5' mean: close-ups of many people's hands. ASL 0 (an O shape) and 6-9 (thumb
        # touching a finger) are not finger counts and are left out.
        dataclasses.replace(
            SIGN_DIGITS, name="sign-digits-counts", label_prefix="", keep_labels=("1", "2", "3", "4", "5")
        ),
    )
}


class FetchError(RuntimeError):
    """A download that could not be done or verified; the message says why."""


def get(name: str) -> DatasetInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(sorted(REGISTRY))}") from None


def attribution(name: str) -> str:
    """The attribution text a model card must carry for dataset `name`."""
    return get(name).attribution


def licence(name: str) -> str:
    """The SPDX licence id of dataset `name`."""
    return get(name).licence


def citations(sources: list[str]) -> list[dict]:
    """What a model card says about each training source (a registered name, a folder, or a Hub id):
    `name` (also the card's `datasets:` entry), `licence`, `attribution`, `origin`."""
    out = []
    for source in sources:
        info = REGISTRY.get(source) or (match(Path(source)) or (None,))[0]
        if info is not None:
            out.append(
                {"name": info.name, "licence": info.licence, "attribution": info.attribution, "origin": info.origin}
            )
        else:
            name = Path(source).name if Path(source).exists() else source
            out.append(
                {"name": name, "licence": "see the dataset", "attribution": f"User data: {source}", "origin": source}
            )
    return out


def match(path: Path) -> Optional[tuple[DatasetInfo, Path, tuple[str, ...]]]:
    """(dataset, its folder, sub-folders to read) when `path` is a registered dataset's folder (matched by
    folder name) or one of its sub-folders; else None."""
    path = Path(os.path.abspath(path))
    for info in REGISTRY.values():
        if path.name == info.folder:
            return info, path, info.subdirs
        for parent in path.parents:
            if parent.name == info.folder:
                return info, parent, (path.relative_to(parent).as_posix(),)
    return None


def fetch(
    name: str, root: Optional[os.PathLike] = None, timeout: float = FETCH_TIMEOUT_S, url: Optional[str] = None
) -> Path:
    """Download dataset `name` (GitHub archive of its pinned commit) into <root>/<folder>; return that path.

    An existing folder is kept as is. The archive's sha256 is checked when one is recorded; when none
    is, a warning says so and logs the computed value. Fails fast with `FetchError` when offline.
    """
    info = get(name)
    root = Path(root) if root is not None else data_root()
    target = root / info.folder
    if target.exists():
        log.info("%s is already at %s; not downloading", name, target)
        return target
    url = url or info.url
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{info.folder}-", dir=root) as tmp:
        archive = Path(tmp) / "archive.zip"
        log.info("downloading %s from %s", name, url)
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, archive.open("wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise FetchError(
                f"could not download {name} from {url}: {reason} (no internet? the data root is {root})"
            ) from None
        sha256 = digest.hexdigest()
        if info.sha256 is None:
            log.warning(
                "no sha256 is recorded for %s, so the download could not be verified; its sha256 is %s "
                "(check it against a trusted copy and record it in hybrid/data/registry.py)",
                name,
                sha256,
            )
        elif sha256 != info.sha256:
            raise FetchError(
                f"{name}: checksum mismatch for {url}: expected sha256 {info.sha256}, got {sha256}; nothing was kept"
            )
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(Path(tmp) / "unpacked")
        except zipfile.BadZipFile as error:
            raise FetchError(f"{name}: {url} did not return a zip archive ({error})") from None
        unpacked = list((Path(tmp) / "unpacked").iterdir())
        # GitHub archives hold one top folder <repo>-<commit>/
        top = unpacked[0] if len(unpacked) == 1 and unpacked[0].is_dir() else Path(tmp) / "unpacked"
        replace_dir(top, target)
    log.info("%s: %s (sha256 %s) -> %s", name, info.licence, sha256, target)
    return target


__all__ = ["DatasetInfo", "REGISTRY", "FetchError", "attribution", "licence", "data_root", "fetch", "get", "match"]
