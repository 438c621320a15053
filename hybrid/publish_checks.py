"""What a push may send, checked before anything is sent (`hybrid.publish` calls these).

1. An allowlist (`files_to_push`). A model push sends, by name:
   - top level: `model.safetensors`, `config.json`, `README.md`, `metrics.json`, `split.json`, `recipe.yaml`,
     the trainers' plots `confusion_matrix.png` and `pr_curve.png`, for a classifier `fingers.safetensors`
     (hybrid.fingers) and for a detector `best.pt`;
   - TensorBoard event files (`events.out.tfevents.*`) at the top level or in `runs/` and `logs/`, and only when
     the file starts like one (`is_event_file`: a first record framed by its length and checksums holding the
     file-version event); `notes/events.out.tfevents.id_rsa` is refused;
   - in the log folders `runs/` and `logs/` (any depth): `results.csv`, `args.yaml` and `.png`/`.jpg`/`.jpeg` plots;
   - the images the card links (`.png .jpg .jpeg .gif .webp .svg` inside the folder).
   Hidden names are never sent, wherever they are (`runs/x/.env.png`, a card linking `.key.png`).
   What the project's own tools leave in a folder and never publish is skipped without a word: `checkpoints/`
   (train/classifier.py's resume state), `.demo-recipe` (train/demo.py's mark), `bench_seconds.txt`
   (bench/generalize.py). Anything else (an `id_rsa`, a `.env`, `notes.txt`, another pickle, a hidden folder, a
   symlink, a FIFO) refuses the push with one line naming every such entry: remove it or move it out.
   A Space push (`space_files`) sends app.py, requirements.txt, LICENSE and hybrid/'s .py files; from a git
   checkout only those git tracks: an untracked one (a `local_settings.py`, ignored or not) or a symlink (a
   `hybrid/rc.py -> ~/.bashrc`) refuses it with one line naming them. Its files get the local-path check below.
2. No local path (`neutral_payload`, `refuse_local_paths`). A pushed copy (the folder is never changed) has every
   absolute path rewritten: a path inside the folder's parent becomes relative to that parent (the folder itself:
   its name, e.g. `output: classifier`; Ultralytics' `detector.work/train`), any other its last part
   (`/srv/data/hands` -> `hands`). Rewritten: JSON/YAML/CSV files, safetensors metadata, the pickles inside a
   torch zip (`best.pt`, read with `pickletools` only, never unpickled), TensorBoard events (records re-framed with
   their checksums). The card (markdown) only gets the paths under the folder's parent, the home folder and the
   working folder rewritten. A file that still names one of those afterwards is refused with one line.
3. No token (`refuse_token`, `TokenSearch`): every pushed file, binary included, and every pushed name is searched
   for the Hub token as text, base64 (standard and URL-safe, at all three byte alignments), base32 (both cases),
   hex (both cases), UTF-16/UTF-32 (both byte orders), rot13 and reversed; in the first `PUSH_DEEP_SCAN_BYTES` of
   each file also with any of its characters escaped (JSON/YAML/Python `\\u` `\\U` `\\x` and octal, URL `%XX`,
   HTML `&#..;`: a config.json or safetensors header written with ensure_ascii) and with whitespace and escaped
   line breaks removed (wrapped base64, a token cut by a line break). Unpacked and searched again, up to
   `PUSH_MAX_UNPACKED_BYTES` and `PUSH_UNPACK_DEPTH` layers deep: gzip, zlib (the default 32 KiB window anywhere,
   the small windows libpng uses in the first `PUSH_DEEP_SCAN_BYTES`), xz and bz2 streams, raw deflate (at each
   of a binary file's first `PUSH_RAW_DEFLATE_SCAN_BYTES` offsets, elsewhere at a layer's start), compressed zip
   members, and base64 runs of 40+ characters (decoded at all four alignments: base64 of gzip). A find is one
   line naming the file, never the token.
   Not found (known gaps): a token split across fields or strings (`{"a": "hf_Ab", "b": "Cd..."}`), encrypted,
   XOR-ed or custom-encoded copies, base85/ascii85/uuencode/quoted-printable, zstd/lz4/brotli/LZMA-alone streams,
   compression more than `PUSH_UNPACK_DEPTH` layers deep, escaped or base64-compressed copies past a file's first
   `PUSH_DEEP_SCAN_BYTES` (inside tensor bytes), raw deflate starting past a binary file's first
   `PUSH_RAW_DEFLATE_SCAN_BYTES`, and pixels (steganography).
"""

from __future__ import annotations

import base64
import binascii
import bz2
import codecs
import io
import json
import logging
import lzma
import os
import pickletools
import re
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, Iterator, Optional

from hybrid.limits import (
    PUSH_DEEP_SCAN_BYTES,
    PUSH_EVENTS_FIRST_RECORD_BYTES,
    PUSH_MAX_ENTRIES,
    PUSH_MAX_UNPACKED_BYTES,
    PUSH_RAW_DEFLATE_SCAN_BYTES,
    PUSH_UNPACK_DEPTH,
)

logger = logging.getLogger(__name__)

# --- 1. the allowlist ---------------------------------------------------------------------------------------

MODEL_FILES = ("model.safetensors", "config.json", "README.md", "metrics.json", "recipe.yaml", "split.json")
KIND_FILES = {"classifier": ("fingers.safetensors",), "detector": ("best.pt",)}  # fingers: hybrid.fingers
PLOTS = ("confusion_matrix.png", "pr_curve.png")  # written next to the card by the trainers
EVENTS_PREFIX = "events.out.tfevents."  # TensorBoard event files (the Hub's metrics tab looks for *tfevents*)
LOG_DIRS = ("runs", "logs")
LOG_FILES = ("results.csv", "args.yaml")  # Ultralytics' run files (train/detector.py copies them into runs/)
LOG_SUFFIXES = (".png", ".jpg", ".jpeg")  # Ultralytics' and TensorBoard's plots
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
OWN_OUTPUTS = ("checkpoints", ".demo-recipe", "bench_seconds.txt")  # top level; never pushed, never refused
LISTED = 20  # names a refusal spells out; the rest are counted


def allowed(kind: str, relative: PurePosixPath) -> bool:
    """Whether a file at `relative` (inside the model folder) is one a `kind` push sends by its name (an event
    file also needs `is_event_file`)."""
    name, parts = relative.name, relative.parts
    if any(part.startswith(".") for part in parts):
        return False  # hidden: a .env.png is still a .env
    if name.startswith(EVENTS_PREFIX):
        return len(parts) == 1 or parts[0] in LOG_DIRS  # where TensorBoard and the Hub's metrics tab look
    if len(parts) == 1:
        return name in MODEL_FILES or name in KIND_FILES[kind] or name in PLOTS
    return parts[0] in LOG_DIRS and (name in LOG_FILES or relative.suffix.lower() in LOG_SUFFIXES)


IMAGE_LINK = re.compile(
    r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
    r"|<img\s[^>]*src=[\"']([^\"']+)[\"']",
    re.I,
)


def card_images(folder: Path, card_text: str, token: Optional[str] = None) -> list[Path]:
    """Local images the card shows (markdown or <img>); one that is missing, outside the folder or not an image
    file -> ValueError (`token` masked in the link it names)."""
    images = []
    for match in IMAGE_LINK.finditer(card_text):
        link = match.group(1) or match.group(2)
        shown = repr(mask(link, token))
        if re.match(r"^[a-z]+:", link, re.I) or link.startswith("#"):
            continue  # http(s)/data URLs
        path = (folder / link.split("#")[0].split("?")[0]).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise ValueError(f"{folder / 'README.md'}: image {shown} lies outside the model folder")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{folder / 'README.md'}: image {shown} is not an image file ({' '.join(IMAGE_SUFFIXES)})")
        if not path.is_file():
            raise ValueError(f"{folder / 'README.md'}: image {shown} does not exist")
        images.append(path)
    return images


IMAGE_MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".gif": (b"GIF87a", b"GIF89a"),
    ".webp": (b"RIFF",),
    ".svg": (b"<svg", b"<?xml"),
}


def is_image_file(path: Path) -> bool:
    """Whether `path` starts like the image its suffix names (a text of keys named plot.png is not one)."""
    with open(path, "rb") as file:
        head = file.read(16)
    if path.suffix.lower() == ".svg":
        head = head.lstrip()
    starts = IMAGE_MAGIC.get(path.suffix.lower(), ())
    return any(head.startswith(start) for start in starts) and (path.suffix.lower() != ".webp" or head[8:12] == b"WEBP")


def _entries(root: Path) -> Iterator[tuple[Path, str]]:
    """(path, '' for a regular file, else what it is) of every entry under `root` the allowlist judges, not
    following links; hidden folders, symlinked folders and the project's own outputs are not entered (the first
    two are judged, as one entry each)."""
    count = 0
    for top, folders, files in os.walk(root, followlinks=False):
        here = Path(top)
        keep = []
        for name in sorted(folders):
            path = here / name
            if here == root and name in OWN_OUTPUTS:
                continue
            if path.is_symlink() or name.startswith("."):
                yield path, "a symlink" if path.is_symlink() else "a hidden folder"
            else:
                keep.append(name)
        folders[:] = keep
        for name in sorted(files):
            path = here / name
            if here == root and name in OWN_OUTPUTS:
                continue
            count += 1
            if count > PUSH_MAX_ENTRIES:
                raise ValueError(
                    f"refusing to push {root}: it holds over {PUSH_MAX_ENTRIES} files; a trained model folder holds "
                    "a few dozen (is this the right folder?)"
                )
            yield path, "a symlink" if path.is_symlink() else "" if path.is_file() else "not a regular file"


def files_to_push(kind: str, folder: Path, card_text: str, token: Optional[str] = None) -> list[Path]:
    """The files a `kind` push of `folder` sends (the allowlist above, sorted, resolved); any other entry ->
    ValueError naming them all (`token` masked in the names)."""
    root = Path(folder).resolve()
    linked = set(card_images(root, card_text, token))
    files, refused = [], []
    for path, other in _entries(root):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        hidden = any(part.startswith(".") for part in relative.parts)
        if not other and relative.name.startswith(EVENTS_PREFIX) and allowed(kind, relative):
            other = "" if is_event_file(path) else "not a TensorBoard event file"
        if not other and relative.suffix.lower() in IMAGE_SUFFIXES and not is_image_file(path):
            other = f"not a {relative.suffix.lower()[1:].upper()} image"
        if not other and not hidden and (allowed(kind, relative) or path in linked):
            files.append(path)
        else:
            refused.append(mask(str(relative), token) + (f" ({other})" if other else ""))
    if refused:
        names = ", ".join(refused[:LISTED]) + (f" and {len(refused) - LISTED} more" if len(refused) > LISTED else "")
        raise ValueError(
            f"refusing to push {root}: {names} {'is' if len(refused) == 1 else 'are'} not what a {kind} push sends "
            "(weights, config.json, README.md, metrics.json, split.json, recipe.yaml, TensorBoard logs, the card's "
            "images); remove them or move them out of the folder"
        )
    return sorted(files)


SPACE_FILES = ("app.py", "requirements.txt", "LICENSE")  # LICENSE when there is one
SPACE_CODE = "hybrid"  # its .py files (__pycache__ aside)


def space_files(source: Path) -> list[Path]:
    """The files a Space push sends from checkout `source`: app.py, requirements.txt, LICENSE and the .py files of
    hybrid/ (in a git checkout: those git tracks). A symlink among them, or a .py file there git does not track
    (a `local_settings.py`, ignored or not) -> ValueError naming them all: commit it, or remove it or move it out."""
    source = Path(source)
    tracked = _git_tracked(source, SPACE_CODE)
    files, refused = [], []
    candidates = [source / name for name in SPACE_FILES if (source / name).is_symlink() or (source / name).exists()]
    for path in [*candidates, *_python_files(source / SPACE_CODE)]:
        relative = path.relative_to(source).as_posix()
        if path.is_symlink():
            refused.append(f"{relative} (a symlink)")
        elif path.parent != source and tracked is not None and relative not in tracked:
            refused.append(f"{relative} (not tracked by git)")
        else:
            files.append(path)
    if refused:
        names = ", ".join(refused[:LISTED]) + (f" and {len(refused) - LISTED} more" if len(refused) > LISTED else "")
        raise ValueError(
            f"refusing to push the Space from {source}: {names}; the Space gets only the code git tracks, never a "
            "link: commit what belongs to it, remove or move out the rest"
        )
    return files


def _python_files(folder: Path) -> Iterator[Path]:
    """Every .py file under `folder` and every symlinked folder in it (judged as one entry), links not followed."""
    for top, folders, names in os.walk(folder, followlinks=False):
        here = Path(top)
        yield from (here / name for name in sorted(folders) if (here / name).is_symlink())
        folders[:] = sorted(name for name in folders if name != "__pycache__" and not (here / name).is_symlink())
        yield from (here / name for name in sorted(names) if name.endswith(".py"))


def _git_tracked(source: Path, under: str) -> Optional[set[str]]:
    """The paths (relative to `source`) git tracks under `source/under`; None when `source` is no git checkout.
    A checkout whose files git cannot list -> ValueError (pushing everything instead would be the old leak)."""
    if not any((folder / ".git").exists() for folder in (source.resolve(), *source.resolve().parents)):
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(source), "ls-files", "-z", "--", under], capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ValueError(f"{source}: a git checkout, but git could not list its files: {error}") from error
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ValueError(f"{source}: a git checkout, but `git ls-files` failed: {message[0] if message else ''}")
    return {name for name in done.stdout.decode("utf-8", "surrogateescape").split("\0") if name}


def is_event_file(path: Path) -> bool:
    """Whether `path` starts like the TFRecord file of TensorBoard events its writers make: a first record framed
    by its length and two checksums that holds the file-version event ('brain.Event:2')."""
    with path.open("rb") as file:
        head = file.read(12)
        if len(head) < 12 or struct.unpack("<I", head[8:])[0] != _masked_crc32c(head[:8]):
            return False
        (length,) = struct.unpack("<Q", head[:8])
        if length > PUSH_EVENTS_FIRST_RECORD_BYTES:
            return False
        record, checksum = file.read(length), file.read(4)
    return (
        len(checksum) == 4 and struct.unpack("<I", checksum)[0] == _masked_crc32c(record) and b"brain.Event:" in record
    )


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C, rotated and offset ("masked"); here so that checking needs no TensorBoard."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- 2. local paths -------------------------------------------------------------------------------------------

BEFORE_PATH = r"(?<![\w.~:/\\-])"  # what may not come right before a path's first slash (a URL, a relative path)
POSIX_PATH = re.compile(BEFORE_PATH + r"/(?=[\w.~@+-])[^\s\"'`<>|*?,;=(){}\[\]\\]*")
WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:[\\/][^\s\"'`<>|*?,;=(){}\[\]]*")
TEXT_SUFFIXES = (".json", ".yaml", ".yml", ".csv")


class PathRewriter:
    """Rewrites absolute local paths for the pushed copies of the files of model folder `root`."""

    def __init__(self, root: Path, given: Optional[Path] = None):
        self.root = root.resolve()
        # the folder's parent as the trainers wrote it (resolved, and as given when that differs: a symlink)
        self.bases = list(dict.fromkeys([self.root.parent, Path(given or root).absolute().parent]))
        self.markers = sorted(
            {str(p) for p in (*self.bases, Path.home(), Path.cwd()) if len(p.parts) > 1}, key=len, reverse=True
        )

    def neutral(self, path: str) -> str:
        pure = PureWindowsPath(path) if WINDOWS_PATH.fullmatch(path) else PurePosixPath(path)
        for base in self.bases:
            if pure.is_relative_to(base.as_posix()):
                return pure.relative_to(base.as_posix()).as_posix()
        return pure.name or "."

    def any_path(self, text: str) -> str:
        """`text` with every absolute path in it rewritten (structured files: JSON, YAML, CSV, pickles, events)."""
        if "/" not in text and ":" not in text:
            return text
        text = POSIX_PATH.sub(lambda m: self.neutral(m.group(0)), text)
        return WINDOWS_PATH.sub(lambda m: self.neutral(m.group(0)), text)

    def local_paths(self, text: str) -> str:
        """`text` with the paths under the local markers rewritten (prose: a card may name '/api/predict')."""
        for marker in self.markers:
            pattern = BEFORE_PATH + re.escape(marker) + r"(?:/[^\s\"'`<>|*?,;=(){}\[\]\\]*)?(?![\w.-])"
            text = re.sub(pattern, lambda m: self.neutral(m.group(0)), text)
        return text

    def left(self, data: bytes) -> Optional[str]:
        """The first local marker `data` still names as a path (not inside a URL or a longer name), if any."""
        for marker in self.markers:
            pattern = BEFORE_PATH.encode() + re.escape(marker.encode()) + rb"(?![\w.-])"
            if (marker.encode() in data and re.search(pattern, data)) or marker.encode("utf-16-le") in data:
                return marker
        return None


def neutral_payload(relative: str, data: bytes, paths: PathRewriter) -> bytes:
    """The bytes pushed for the file at `relative`: `data` with its absolute local paths rewritten where the format
    allows it; unchanged (for `refuse_local_paths` to judge) where it does not parse."""
    name = PurePosixPath(relative).name
    suffix = PurePosixPath(relative).suffix.lower()
    if name.startswith(EVENTS_PREFIX):
        return _neutral_events(data, paths.any_path)
    if suffix in TEXT_SUFFIXES or suffix == ".md":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        fixed = paths.local_paths(text) if suffix == ".md" else paths.any_path(text)
        return fixed.encode("utf-8")
    if suffix == ".safetensors":
        return _neutral_safetensors(data, paths.any_path)
    if data[:4] == b"PK\x03\x04":  # a torch zip (best.pt)
        return _neutral_torch_zip(data, paths.any_path)
    return data


def refuse_local_paths(relative: str, data: bytes, paths: PathRewriter) -> None:
    """ValueError naming `relative` when its pushed bytes still hold a local path."""
    marker = paths.left(data)
    if marker:
        raise ValueError(
            f"refusing to push: {relative} names the local path {marker} where push cannot rewrite it; "
            "remove it from the file"
        )


def _neutral_safetensors(data: bytes, fix: Callable[[str], str]) -> bytes:
    """The header's strings (metadata) rewritten; the tensors untouched."""
    if len(data) < 8:
        return data
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return data
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        return data
    fixed = {k: fix(v) if isinstance(v, str) else v for k, v in metadata.items()}
    if fixed == metadata:
        return data
    text = json.dumps({**header, "__metadata__": fixed}, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the tensor data stays 8-byte aligned
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


STRING_OPS = ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE")


def _neutral_pickle(data: bytes, fix: Callable[[str], str]) -> bytes:
    """The pickle's text strings rewritten by editing its opcodes (pickletools reads, nothing is unpickled).
    Frames are dropped when a string changes: framing is optional and their sizes would be wrong."""
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # not a pickle pickletools can read: judged as it is
        return data
    out, last, changed = [], 0, False
    ends = [pos for _, _, pos in ops[1:]] + [ops[-1][2] + 1 if ops else 0]
    for (opcode, arg, pos), end in zip(ops, ends):
        if opcode.name in STRING_OPS and isinstance(arg, str) and fix(arg) != arg:
            encoded = fix(arg).encode("utf-8", "surrogatepass")
            out += [data[last:pos], b"X" + struct.pack("<I", len(encoded)) + encoded]
            last, changed = end, True
    if not changed:
        return data
    out.append(data[last:])
    rewritten = b"".join(out)
    return b"".join(rewritten[start:end] for start, end in _without_frames(rewritten))


def _without_frames(data: bytes) -> list[tuple[int, int]]:
    """(start, end) spans of `data` that are not FRAME opcodes."""
    spans, last = [], 0
    for opcode, _, pos in pickletools.genops(data):
        if opcode.name == "FRAME":
            spans.append((last, pos))
            last = pos + 9
    spans.append((last, len(data)))
    return spans


def _neutral_torch_zip(data: bytes, fix: Callable[[str], str]) -> bytes:
    """A torch zip (best.pt) with the strings of its pickles rewritten; rebuilt member by member when one changed
    (torch.load and Ultralytics read it as before)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
        changed = {}
        for info in members:
            if info.filename.endswith(".pkl") and info.file_size <= PUSH_MAX_UNPACKED_BYTES:
                old = archive.read(info)
                new = _neutral_pickle(old, fix)
                if new != old:
                    changed[info.filename] = new
        if not changed:
            return data
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as rebuilt:
            for info in members:
                rebuilt.writestr(info, changed.get(info.filename) or archive.read(info))
        return out.getvalue()
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError):
        return data


def _tf_records(data: bytes) -> Optional[list[tuple[int, int]]]:
    """(start, end) of each record's bytes in a TFRecord file (TensorBoard events), or None when it is not one
    (a record is framed by its 8-byte length, a checksum of it, and a checksum of the record)."""
    records, pos = [], 0
    while pos < len(data):
        if pos + 12 > len(data):
            return None
        (length,) = struct.unpack_from("<Q", data, pos)
        start, end = pos + 12, pos + 12 + length
        if end + 4 > len(data):
            return None
        records.append((start, end))
        pos = end + 4
    return records


def _neutral_events(data: bytes, fix: Callable[[str], str]) -> bytes:
    """TensorBoard events with the strings of every event rewritten (text summaries, hparams); the changed
    records are framed anew with their checksums."""
    records = _tf_records(data)
    if not records:
        return data
    try:
        from google.protobuf.message import DecodeError
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    except ImportError:  # no TensorBoard here: judged as it is
        return data
    out, changed = [], False
    for start, end in records:
        try:
            event = event_pb2.Event.FromString(data[start:end])
        except DecodeError:
            return data
        if not _fix_message(event, fix):
            out.append(data[start - 12 : end + 4])  # as it was, checksums included
            continue
        record, changed = event.SerializeToString(deterministic=True), True
        header = struct.pack("<Q", len(record))
        out.append(
            header + struct.pack("<I", masked_crc32c(header)) + record + struct.pack("<I", masked_crc32c(record))
        )
    return b"".join(out) if changed else data


TEXT_BYTES_FIELDS = ("tensorboard.TensorProto.string_val",)  # text summaries keep their text here
PLUGIN_CONTENT = "tensorboard.SummaryMetadata.PluginData.content"


def _fix_text_bytes(value: bytes, fix: Callable[[str], str]) -> bytes:
    try:
        return fix(value.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        return value


def _fix_message(message, fix: Callable[[str], str]) -> bool:
    """Rewrite every string of protobuf `message` in place (nested messages, maps, the hparams plugin's content);
    True when one changed. Other bytes fields (images, graphs) are left as they are."""
    changed = False
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            entry = field.message_type.GetOptions().map_entry
            if entry and field.message_type.fields_by_name["value"].type != field.TYPE_MESSAGE:
                for key in list(value):
                    if isinstance(value[key], str) and fix(value[key]) != value[key]:
                        value[key], changed = fix(value[key]), True
                continue
            items = value.values() if entry else (value if field.is_repeated else [value])
            for item in list(items):
                changed = _fix_message(item, fix) or changed
        elif field.type in (field.TYPE_STRING, field.TYPE_BYTES):
            if field.type == field.TYPE_STRING:
                fixer = fix
            elif field.full_name in TEXT_BYTES_FIELDS:
                fixer = lambda v: _fix_text_bytes(v, fix)  # noqa: E731
            elif field.full_name == PLUGIN_CONTENT and getattr(message, "plugin_name", "") == "hparams":
                fixer = lambda v: _fix_hparams(v, fix)  # noqa: E731
            else:
                continue
            if field.is_repeated:
                for i, item in enumerate(list(value)):
                    if fixer(item) != item:
                        value[i], changed = fixer(item), True
            elif fixer(value) != value:
                setattr(message, field.name, fixer(value))
                changed = True
    return changed


def _fix_hparams(content: bytes, fix: Callable[[str], str]) -> bytes:
    from google.protobuf.message import DecodeError
    from tensorboard.plugins.hparams import plugin_data_pb2

    try:
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
    except DecodeError:
        return content
    return data.SerializeToString(deterministic=True) if _fix_message(data, fix) else content


# --- 3. the token ---------------------------------------------------------------------------------------------


def token_forms(token: str) -> list[tuple[str, bytes]]:
    """(encoding, bytes) of every form of `token` searched for as it is. A base64 or base32 form is the part of the
    encoding that only the token's bytes decide (the characters that depend on what surrounds it are cut)."""
    raw = token.encode("utf-8")
    forms = [("as text", raw), ("hex", raw.hex().encode()), ("hex", raw.hex().upper().encode())]
    forms += [(f"as {codec.upper()}", token.encode(codec)) for codec in ("utf-16-le", "utf-16-be", "utf-32-le")]
    forms.append(("as UTF-32-BE", token.encode("utf-32-be")))
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw + b"\0\0\0")
        core = encoded[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6]
        forms += [("base64", core), ("base64", core.translate(bytes.maketrans(b"+/", b"-_")))]
    for shift in range(5):
        encoded = base64.b32encode(b"\0" * shift + raw + b"\0" * 5)
        core = encoded[-(-8 * shift // 5) : 8 * (shift + len(raw)) // 5]
        forms += [("base32", core), ("base32", core.lower())]
    forms += [("rot13", codecs.encode(token, "rot13").encode("utf-8")), ("reversed", raw[::-1])]
    forms += [("as character codes", separator.join(str(byte).encode() for byte in raw)) for separator in (b",", b", ")]
    return list(dict.fromkeys(forms))


def mask(text: str, token: Optional[str]) -> str:
    """`text` (a file name for a message) with every readable form of `token` in it replaced by ***."""
    for _, form in token_forms(token) if token else []:
        if form.isascii() and b"\0" not in form:
            text = text.replace(form.decode("ascii"), "***")
    return text


def _hex_digits(value: int, width: int = 0) -> bytes:
    """`value` in hex as a pattern that takes either case ([aA] for a)."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{width}x}").encode()


def _char_pattern(char: str) -> bytes:
    """A pattern for `char` as it is or as one escape: JSON/YAML/Python \\u \\U \\x and octal, URL %XX (or %25XX,
    escaped twice), HTML &#..;"""
    code = ord(char)
    options = [re.escape(char.encode("utf-8")), rb"\\u" + _hex_digits(code, 4), rb"\\U" + _hex_digits(code, 8)]
    if code < 0x100:
        octal = f"{code:o}".encode()
        options += [rb"\\x" + _hex_digits(code, 2), rb"%(?:25)?" + _hex_digits(code, 2)]  # URL-escaped, or twice
        options += [rb"\\" + b"0?" * (3 - len(octal)) + octal] if len(octal) <= 3 else []
    options += [rb"&#0*" + str(code).encode() + b";", rb"&#[xX]0*" + _hex_digits(code) + b";"]
    return b"(?:" + b"|".join(options) + b")"


WHITESPACE = b" \t\r\n"
LINE_ESCAPES = (b"\\n", b"\\r", b"\\t")  # a line break as JSON/YAML/Python write it inside a string


def _unwrapped(data: bytes) -> bytes:
    """`data` without whitespace and escaped line breaks: base64 wrapped at 76 columns (or `"\\n"` every few
    characters in JSON), a token cut by a line break, joined again."""
    for escape in LINE_ESCAPES:
        if escape in data:
            data = data.replace(escape, b"")
    return data.translate(None, WHITESPACE)


class TokenSearch:
    """The forms of one token, searched for in each layer of a pushed file: `token_forms` in all of it; in its first
    PUSH_DEEP_SCAN_BYTES also the token with any of its characters escaped, and the forms with line breaks and
    spaces removed."""

    def __init__(self, token: str):
        self.forms = token_forms(token)
        self.text_forms = [(encoding, form) for encoding, form in self.forms if form.isascii() and b"\0" not in form]
        self.escaped = re.compile(b"".join(_char_pattern(char) for char in token))
        self.shortest = min(len(form) for _, form in self.forms)

    def found(self, data: bytes) -> Optional[str]:
        """How `data` holds the token (e.g. 'base64'), or None."""
        for encoding, form in self.forms:
            if form in data:
                return encoding
        head = data[:PUSH_DEEP_SCAN_BYTES]
        if self.escaped.search(head):
            return "with escaped characters"
        unwrapped = _unwrapped(head)
        if len(unwrapped) < len(head):
            for encoding, form in self.text_forms:
                if form in unwrapped:
                    return f"{encoding}, cut by line breaks"
        return None


# zlib streams start with CMF (deflate, a window of 2^8 .. 2^15 bytes) and FLG (no preset dictionary, any level,
# the header's checksum): 32 two-byte starts. The 32 KiB window every encoder defaults to is looked for in all of
# a file; the small windows (libpng picks one for small images) in its first PUSH_DEEP_SCAN_BYTES.
ZLIB_STARTS = {
    cmf: bytes(flg for flg in range(256) if (cmf * 256 + flg) % 31 == 0 and not flg & 0x20)
    for cmf in range(0x08, 0x80, 0x10)
}


def _zlib_start(cmf: int) -> re.Pattern:
    return re.compile(b"\\x%02x[" % cmf + b"".join(b"\\x%02x" % flg for flg in ZLIB_STARTS[cmf]) + b"]")


STREAMS = (  # (what, where one starts, a decompressor for it)
    ("gzip", re.compile(rb"\x1f\x8b\x08"), lambda: zlib.decompressobj(31)),
    ("zlib", _zlib_start(0x78), zlib.decompressobj),
    ("xz", re.compile(rb"\xfd7zXZ\x00"), lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
    ("bz2", re.compile(rb"BZh[1-9]1AY&SY"), bz2.BZ2Decompressor),
)
SMALL_WINDOW_ZLIB = tuple(("zlib", _zlib_start(cmf), zlib.decompressobj) for cmf in ZLIB_STARTS if cmf != 0x78)
RAW_DEFLATE = ("deflate", lambda: zlib.decompressobj(-15))
# base64 (standard or URL-safe) of at least 30 bytes, possibly wrapped, indented or with escaped line breaks;
# shorter runs (words, identifiers) are not decoded, and the token's own base64 is one of `token_forms`
BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_\-\\ \t\r\n]{40,}={0,2}")
URL_SAFE = bytes.maketrans(b"-_", b"+/")


class _Budget:
    def __init__(self, relative: str):
        self.left, self.relative = PUSH_MAX_UNPACKED_BYTES, relative

    def take(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise ValueError(
                f"refusing to push: {self.relative} unpacks to over {PUSH_MAX_UNPACKED_BYTES // 2**20} MiB, too "
                "much to check for your Hub token; remove it or store it uncompressed"
            )


def _unpacked(data: bytes, budget: _Budget, outermost: bool = False) -> Iterator[tuple[str, bytes]]:
    """(what, bytes) of every compressed stream in `data`, every compressed zip member, and every base64 run (in
    the first PUSH_DEEP_SCAN_BYTES), unpacked. `outermost`: `data` is the file itself (where a raw deflate stream
    is looked for at each of the first offsets; elsewhere only at the start)."""
    view = memoryview(data)
    head = view[:PUSH_DEEP_SCAN_BYTES]
    for what, start, decompressor in STREAMS:
        yield from _streams(what, start.finditer(data), decompressor, view, budget)
    for what, start, decompressor in SMALL_WINDOW_ZLIB:
        yield from _streams(what, start.finditer(head), decompressor, view, budget)
    what, decompressor = RAW_DEFLATE
    offsets = range(min(len(data), PUSH_RAW_DEFLATE_SCAN_BYTES)) if outermost and not _is_text(data) else range(1)
    yield from _streams(what, offsets, decompressor, view, budget)
    if data[:4] == b"PK\x03\x04":
        yield from _zip_members(data, budget)
    yield from _base64_runs(bytes(head), budget)


def _streams(what: str, starts, decompressor: Callable, view: memoryview, budget: _Budget):
    for start in starts:
        start = start if isinstance(start, int) else start.start()
        # a first look at a few KiB throws out the byte patterns that only look like a stream's start
        # (weights hold one every 16 KiB) without copying the rest of the file for each
        if _inflate(decompressor, view[start : start + PROBE], 2**20) is None:
            continue
        chunk = _inflate(decompressor, view[start:], budget.left + 1)
        if chunk:
            budget.take(len(chunk))
            yield what, chunk


def _is_text(data: bytes) -> bool:
    """Whether the first PUSH_RAW_DEFLATE_SCAN_BYTES of `data` are UTF-8 (a raw deflate stream cannot hide in text)."""
    head = data[:PUSH_RAW_DEFLATE_SCAN_BYTES]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start >= len(head) - 3 and len(head) == PUSH_RAW_DEFLATE_SCAN_BYTES  # a character cut at the end
    return True


def _base64_runs(head: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    """Each base64 run in `head` decoded, at each of the four alignments (what comes before a run may be glued to
    it, e.g. 'key=H4sI...'), for the next layer to unpack (base64 of gzip, zlib, ...)."""
    for match in BASE64_RUN.finditer(head):
        run = _unwrapped(match.group(0)).replace(b"\\", b"").translate(URL_SAFE)
        if len(run) < 40:
            continue
        for shift in range(4):
            quads = run[shift : shift + (len(run) - shift) // 4 * 4]
            try:
                chunk = binascii.a2b_base64(quads)
            except binascii.Error:
                continue
            budget.take(len(chunk))
            yield "base64", chunk


PROBE = 4096  # bytes of a would-be stream unpacked first (at most 1 MiB out) to see whether it is one


FEED = 2**20  # input given to a decompressor at a time: what follows a stream's end is copied (unused_data)


def _inflate(decompressor: Callable, data: memoryview, limit: int) -> Optional[bytes]:
    """What `data` unpacks to (at most `limit` bytes; a cut stream gives what it holds), None if it is no stream."""
    unpacker, pieces, size = decompressor(), [], 0
    try:
        for start in range(0, len(data), FEED):
            pieces.append(unpacker.decompress(data[start : start + FEED], limit - size))
            size += len(pieces[-1])
            if size >= limit or unpacker.eof:
                break
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
        return None
    return b"".join(pieces)


def _zip_members(data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        for info in archive.infolist():
            if info.compress_type == zipfile.ZIP_STORED or info.is_dir():
                continue  # its bytes are in the file as they are
            with archive.open(info) as member:
                chunk = member.read(budget.left + 1)
            budget.take(len(chunk))
            yield "zip", chunk
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError):
        return


def refuse_token(relative: str, data: bytes, token: str) -> None:
    """ValueError naming `relative` when its name or bytes hold `token` in a form `TokenSearch` finds, or any
    other secret `SECRETS` knows, also inside compressed streams and decoded base64 (never the secret itself)."""
    search = TokenSearch(token)
    if search.found(relative.encode("utf-8")):
        raise ValueError(f"refusing to push: the name {mask(relative, token)} contains your Hub token; rename it")
    for what, layer in _layers(relative, data, search.shortest):
        where = f", inside {what}" if what else ""
        encoding = search.found(layer)
        if encoding:
            raise ValueError(
                f"refusing to push: {relative} contains your Hub token ({encoding}{where}); remove it from the file"
            )
        for kind, pattern in SECRETS.items():
            if pattern.search(layer):
                raise ValueError(
                    f"refusing to push: {relative} contains what looks like {kind}{where}; remove it from the file"
                )


# Secrets other than the push token that a model folder must never publish (the probe pushed another account's
# Hub token in metrics.json and a private key named runs/x/results.csv)
SECRETS = {
    "a Hugging Face token": re.compile(rb"hf_[A-Za-z0-9]{30,}"),
    "a private key": re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"),
    "an AWS access key": re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a GitHub token": re.compile(rb"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,})"),
    "an API secret key": re.compile(rb"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}"),
}


def _layers(relative: str, data: bytes, shortest: int) -> Iterator[tuple[str, bytes]]:
    """(what it is inside, bytes) of `data` and of the compressed streams and base64 inside it, PUSH_UNPACK_DEPTH
    layers deep, within the file's unpacking budget."""
    budget, layers = _Budget(relative), [("", data)]
    for depth in range(PUSH_UNPACK_DEPTH + 1):
        inner = []
        for what, layer in layers:
            yield what, layer
            if depth < PUSH_UNPACK_DEPTH:
                unpacked = _unpacked(layer, budget, outermost=depth == 0)
                inner += [(_inside(kind, what), chunk) for kind, chunk in unpacked if len(chunk) >= shortest]
        layers = inner


def _inside(kind: str, outer: str) -> str:
    """'a gzip stream', 'a zlib stream in base64', ... for a message."""
    here = "base64" if kind == "base64" else f"a {kind} {'member' if kind == 'zip' else 'stream'}"
    return f"{here} in {outer}" if outer else here
