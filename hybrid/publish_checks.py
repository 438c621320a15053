"""What a push may send, checked before anything is sent (`hybrid.publish` calls these).

1. An allowlist (`files_to_push`). A model push sends, by name:
   - top level: `model.safetensors`, `config.json`, `README.md`, `metrics.json`, `split.json`, `recipe.yaml`,
     the trainers' plots `confusion_matrix.png` and `pr_curve.png`, and for a detector `best.pt`;
   - TensorBoard event files (`events.out.tfevents.*`) anywhere;
   - in the log folders `runs/` and `logs/` (any depth): `results.csv`, `args.yaml` and `.png`/`.jpg`/`.jpeg` plots;
   - the images the card links (`.png .jpg .jpeg .gif .webp .svg` inside the folder).
   What the project's own tools leave in a folder and never publish is skipped without a word: `checkpoints/`
   (train/classifier.py's resume state), `.demo-recipe` (train/demo.py's mark), `bench_seconds.txt`
   (bench/generalize.py). Anything else (an `id_rsa`, a `.env`, `notes.txt`, another pickle, a hidden folder, a
   symlink, a FIFO) refuses the push with one line naming every such entry: remove it or move it out.
2. No local path (`neutral_payload`, `refuse_local_paths`). A pushed copy (the folder is never changed) has every
   absolute path rewritten: a path inside the folder's parent becomes relative to that parent (the folder itself:
   its name, e.g. `output: classifier`; Ultralytics' `detector.work/train`), any other its last part
   (`/srv/data/hands` -> `hands`). Rewritten: JSON/YAML/CSV files, safetensors metadata, the pickles inside a
   torch zip (`best.pt`, read with `pickletools` only, never unpickled), TensorBoard events (records re-framed with
   their checksums). The card (markdown) only gets the paths under the folder's parent, the home folder and the
   working folder rewritten. A file that still names one of those afterwards is refused with one line.
3. No token (`refuse_token`): every pushed file, binary included, and every pushed name is searched for the Hub
   token as text, base64 (standard and URL-safe, at all three byte alignments, also with line breaks removed),
   hex (both cases), UTF-16/UTF-32 (both byte orders), also inside gzip, zlib, xz and bz2 streams and compressed
   zip members (unpacked up to `PUSH_MAX_UNPACKED_BYTES`, `PUSH_UNPACK_DEPTH` layers deep). A find is one line
   naming the file, never the token.
"""

from __future__ import annotations

import base64
import bz2
import io
import json
import logging
import lzma
import os
import pickletools
import re
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, Iterator, Optional

from hybrid.limits import PUSH_MAX_ENTRIES, PUSH_MAX_UNPACKED_BYTES, PUSH_UNPACK_DEPTH

logger = logging.getLogger(__name__)

# --- 1. the allowlist ---------------------------------------------------------------------------------------

MODEL_FILES = ("model.safetensors", "config.json", "README.md", "metrics.json", "recipe.yaml", "split.json")
KIND_FILES = {"classifier": (), "detector": ("best.pt",)}
PLOTS = ("confusion_matrix.png", "pr_curve.png")  # written next to the card by the trainers
EVENTS_PREFIX = "events.out.tfevents."  # TensorBoard event files (the Hub's metrics tab looks for *tfevents*)
LOG_DIRS = ("runs", "logs")
LOG_FILES = ("results.csv", "args.yaml")  # Ultralytics' run files (train/detector.py copies them into runs/)
LOG_SUFFIXES = (".png", ".jpg", ".jpeg")  # Ultralytics' and TensorBoard's plots
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
OWN_OUTPUTS = ("checkpoints", ".demo-recipe", "bench_seconds.txt")  # top level; never pushed, never refused
LISTED = 20  # names a refusal spells out; the rest are counted


def allowed(kind: str, relative: PurePosixPath) -> bool:
    """Whether a file at `relative` (inside the model folder) is one a `kind` push sends by its name."""
    name, parts = relative.name, relative.parts
    if name.startswith(EVENTS_PREFIX):
        return True
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
        if not other and (allowed(kind, relative) or path in linked):
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
    """(encoding, bytes) of every form of `token` searched for. A base64 form is the part of the encoding that
    only the token's bytes decide (the characters that depend on what surrounds it are cut)."""
    raw = token.encode("utf-8")
    forms = [("as text", raw), ("hex", raw.hex().encode()), ("hex", raw.hex().upper().encode())]
    forms += [(f"as {codec.upper()}", token.encode(codec)) for codec in ("utf-16-le", "utf-16-be", "utf-32-le")]
    forms.append(("as UTF-32-BE", token.encode("utf-32-be")))
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw + b"\0\0\0")
        core = encoded[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6]
        forms += [("base64", core), ("base64", core.translate(bytes.maketrans(b"+/", b"-_")))]
    return list(dict.fromkeys(forms))


def mask(text: str, token: Optional[str]) -> str:
    """`text` (a file name for a message) with every readable form of `token` in it replaced by ***."""
    for _, form in token_forms(token) if token else []:
        if form.isascii() and b"\0" not in form:
            text = text.replace(form.decode("ascii"), "***")
    return text


def _found(data: bytes, forms: list[tuple[str, bytes]]) -> Optional[str]:
    unwrapped = data.replace(b"\n", b"").replace(b"\r", b"") if b"\n" in data or b"\r" in data else None
    for encoding, form in forms:
        if form in data or (unwrapped is not None and encoding in ("base64", "hex") and form in unwrapped):
            return encoding
    return None


ZLIB_HEADER = re.compile(rb"\x78[\x01\x5e\x9c\xda]")
STREAMS = (  # (what, where one starts, a decompressor for it)
    ("gzip", re.compile(rb"\x1f\x8b\x08"), lambda: zlib.decompressobj(31)),
    ("zlib", ZLIB_HEADER, zlib.decompressobj),
    ("xz", re.compile(rb"\xfd7zXZ\x00"), lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
    ("bz2", re.compile(rb"BZh[1-9]1AY&SY"), bz2.BZ2Decompressor),
)


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


def _unpacked(data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    """(what, bytes) of every compressed stream in `data` and every compressed zip member, unpacked."""
    view = memoryview(data)
    for what, start, decompressor in STREAMS:
        for match in start.finditer(data):
            # a first look at a few KiB throws out the byte patterns that only look like a stream's start
            # (weights hold one every 16 KiB) without copying the rest of the file for each
            if _inflate(decompressor, view[match.start() : match.start() + PROBE], 2**20) is None:
                continue
            chunk = _inflate(decompressor, view[match.start() :], budget.left + 1)
            if chunk:
                budget.take(len(chunk))
                yield what, chunk
    if data[:4] == b"PK\x03\x04":
        yield from _zip_members(data, budget)


PROBE = 4096  # bytes of a would-be stream unpacked first (at most 1 MiB out) to see whether it is one


def _inflate(decompressor: Callable, data: memoryview, limit: int) -> Optional[bytes]:
    """What `data` unpacks to (at most `limit` bytes; a cut stream gives what it holds), None if it is no stream."""
    try:
        return decompressor().decompress(data, limit)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
        return None


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
    """ValueError naming `relative` when its name or bytes hold `token` in a form `token_forms` lists, also inside
    compressed streams (never the token itself)."""
    forms = token_forms(token)
    if _found(relative.encode("utf-8"), forms):
        raise ValueError(f"refusing to push: the name {mask(relative, token)} contains your Hub token; rename it")
    budget, layers = _Budget(relative), [("", data)]
    for depth in range(PUSH_UNPACK_DEPTH + 1):
        inner = []
        for what, layer in layers:
            encoding = _found(layer, forms)
            if encoding:
                where = f" ({encoding}{', inside a ' + what + ' stream' if what else ''})"
                raise ValueError(
                    f"refusing to push: {relative} contains your Hub token{where}; remove it from the file"
                )
            if depth < PUSH_UNPACK_DEPTH:
                inner += [(what or kind, chunk) for kind, chunk in _unpacked(layer, budget)]
        layers = inner
