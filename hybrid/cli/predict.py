"""`hybrid predict IMG|VIDEO...`: find hands and name their gestures; optionally save annotated images.
A video (by its suffix) gets tracked hands with steady gestures (hybrid.video): JSON lines per frame and,
with --save-dir, an annotated copy."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path
from typing import Optional

from PIL import Image

# What os.stat calls a path that is not a regular file, as an error line names it.
FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(text: object) -> str:
    """`text` with control and other unprintable characters (newlines, ANSI escapes, bytes of a name that is not
    UTF-8) written as Python escapes (\\n, \\x1b, \\udcff) and backslashes doubled: a name can never forge a line
    or reach the terminal as a command."""

    def escape(char: str) -> str:
        if char in ESCAPES:
            return ESCAPES[char]
        if char.isprintable():
            return char
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

    return "".join(escape(char) for char in str(text))


def json_line(value: object) -> str:
    """One JSON line; a name that is not UTF-8 (its bytes are lone surrogates in Python) becomes JSON escapes
    instead of ending the batch in a UnicodeEncodeError."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")


def report(error: object) -> None:
    """One error line on stderr (hybrid.cli.error), for an input the batch goes on without."""
    print(f"hybrid: error: {printable(error)}", file=sys.stderr, flush=True)


def error_text(path: object, error: Exception) -> str:
    """The line of an input the batch goes on without: our errors name the input already; an OSError (a full
    disk, a name the file system refuses) gets it."""
    return f"{path}: {error.strerror or error}" if isinstance(error, OSError) else str(error)


def not_a_regular_file(path: str) -> Optional[str]:
    """Why `path` is not read (a FIFO would block the open forever, a device never ends), or None for a regular
    file and for a path os.stat cannot see (the loader then says what is wrong)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in FILE_KINDS if test(mode)), "not a file")
    return f"{path}: {kind}, not a regular file"


def check_output_folder(folder: Path, flag: str) -> None:
    """Refuse, before any work, an output folder (`flag` names the option) that is a file or cannot be
    created or written; creates nothing."""
    existing = next(path for path in (folder, *folder.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {folder}: {existing} is a file, expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {folder}: {existing} is not writable")


def save_unique(image: Image.Image, save_dir: Path, stem: str) -> Path:
    """Save `image` as save_dir/STEM.jpg, or STEM-1.jpg, STEM-2.jpg, ... when taken (a symlink too, dangling or
    not); never replaces a file. Written whole first, then hard-linked in place (hybrid.files.link_unique), so
    no file is half-written or overwritten, even by a concurrent run. A long stem is cut (`short_stem`)."""
    from hybrid.files import link_unique, short_stem, staged_file

    with staged_file(save_dir, ".jpg") as staged:
        image.save(staged, format="JPEG", quality=90)
        return save_dir / f"{link_unique(save_dir, short_stem(stem), {'.jpg': staged})}.jpg"


def model_source(given: Optional[str], kind: str) -> str:
    """--detector/--classifier, else $HYBRID_<KIND>, else the Space pin (resolved as a Hub id only, to the folder
    of its snapshot), else models/<kind>."""
    if given:
        return given
    from hybrid.hub import model_choice, snapshot

    name, pinned = model_choice(kind)
    return str(snapshot(name, local=False)) if pinned else name


def _probability(flag: str, value: Optional[float]) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{flag} must be between 0 and 1, got {value}")


def predict_command(args: argparse.Namespace) -> int:
    """`hybrid predict IMG... [--json] [--save-dir DIR]`. With --json: one JSON object per image, one per
    line ({"image", "width", "height", "hands": [Hand.to_dict()...]}, plus "annotated" with --save-dir).
    An unreadable image (corrupt, missing, too large) gets an error line on stderr (with --json also its
    JSON line {"image", "error"}) and the others go on; the exit status is then 1."""
    from hybrid.images import ImageError, load_image
    from hybrid.pipeline import HybridPipeline, draw_hands, hand_tag, image_result

    _probability("--min-confidence", args.min_confidence)
    _probability("--detector-threshold", args.detector_threshold)
    save_dir = Path(args.save_dir) if args.save_dir else None
    if save_dir:
        check_output_folder(save_dir, "--save-dir")
    pipe = HybridPipeline.from_pretrained(
        detector=model_source(args.detector, "detector"),
        classifier=model_source(args.classifier, "classifier"),
        **{
            k: v
            for k, v in (("min_confidence", args.min_confidence), ("detector_threshold", args.detector_threshold))
            if v is not None
        },
    )
    failed = 0
    for path in args.images:
        if is_video(path):
            failed += predict_video(pipe, Path(path), save_dir, args.json)
            continue
        try:
            problem = not_a_regular_file(path)
            if problem:
                raise ImageError(problem)
            image = load_image(path)
            hands = pipe(image)[0]
            result = image_result(path, image, hands)
            if save_dir:
                drawn = draw_hands(image, hands, pipe.classifier.label_names)
                result["annotated"] = str(save_unique(drawn, save_dir, Path(path).stem))
        except (ImageError, OSError) as error:  # report it, go on with the other images
            text = error_text(path, error)
            report(text)
            if args.json:
                print(json_line({"image": str(path), "error": text}), flush=True)
            failed += 1
            continue
        if args.json:
            print(json_line(result), flush=True)
        else:
            found = ", ".join(f"{printable(h.label)} {h.probability:.0%}{hand_tag(h)}" for h in hands) or "no hands"
            print(f"{printable(path)}: {found}", flush=True)
    return 1 if failed else 0


VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")


def is_video(path: str) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def predict_video(pipe, path: Path, save_dir: Optional[Path], as_json: bool) -> int:
    """Track the hands of one video. With save_dir: STEM.mp4 (annotated) and STEM.jsonl (one JSON line per
    frame), both written whole or not at all; without it, the JSON lines on stdout (--json) or one summary
    line. The pair is written to staged files, then linked in place under the first stem free for both
    (hybrid.files.link_unique), so a concurrent run on the same name never replaces it. A video that cannot be
    read gets one error line; returns the number of failures (0 or 1)."""
    from contextlib import ExitStack

    from tqdm import tqdm

    from hybrid.files import link_unique, short_stem, staged_file
    from hybrid.video import VideoError, probe_video, track_video

    try:
        problem = not_a_regular_file(str(path))
        if problem:
            raise VideoError(problem)
        info = probe_video(path)
        with ExitStack() as stack:
            lines, staged, video = None, None, None
            if save_dir:
                staged = {suffix: stack.enter_context(staged_file(save_dir, suffix)) for suffix in (".mp4", ".jsonl")}
                lines = staged[".jsonl"].open("w", encoding="utf-8")
                stack.callback(lines.close)
            bar = stack.enter_context(
                tqdm(total=info.frames or None, unit="frame", desc=path.name, disable=not sys.stderr.isatty())
            )
            tracks: dict[int, list[str]] = {}
            for frame in track_video(pipe, path, output=staged and staged[".mp4"]):
                bar.update()
                text = json.dumps(frame.to_dict(), ensure_ascii=False)
                if lines or as_json:
                    print(text, file=lines or sys.stdout, flush=True)
                for hand in frame.hands:
                    tracks.setdefault(hand.track_id, []).append(hand.label)
            if staged:
                lines.close()
                video = save_dir / f"{link_unique(save_dir, short_stem(path.stem), staged)}.mp4"
    except (VideoError, OSError) as error:
        text = error_text(path, error)
        report(text)
        if as_json and not save_dir:
            print(json_line({"video": str(path), "error": text}), flush=True)
        return 1
    if not (as_json and not save_dir):
        print(f"{printable(path)}: {video_summary(tracks)}" + (f" -> {printable(video)}" if video else ""), flush=True)
    return 0


def video_summary(tracks: dict[int, list[str]]) -> str:
    """'#1 5 (92% of 40 frames), #2 ...' : each track's most frequent gesture and its share of the track's frames
    (a label name comes from the model's config.json: printed with `printable`)."""
    if not tracks:
        return "no hands"
    parts = []
    for track_id, labels in sorted(tracks.items()):
        top = max(set(labels), key=labels.count)
        parts.append(f"#{track_id} {printable(top)} ({labels.count(top) / len(labels):.0%} of {len(labels)} frames)")
    return ", ".join(parts)


PREDICT_DESCRIPTION = (
    "Find hands and name their gestures. An image that cannot be read gets an error line (with "
    '--json: a JSON line {"image", "error"}) and the others go on; the exit status is then 1 '
    "(2 for bad arguments or models). A video (.mp4, .mov, .avi, .mkv, .webm, ...) gets tracked hands: "
    "one JSON line per frame (frame, timestamp, hands with track_id and smoothed label); with --save-dir "
    "STEM.jsonl and the annotated STEM.mp4."
)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--detector and --classifier, as `model_source` resolves them."""
    for kind in ("detector", "classifier"):
        parser.add_argument(
            f"--{kind}",
            default=None,
            help=f"Hub id[@revision] or folder (default: $HYBRID_{kind.upper()}, the Space pins, then models/{kind})",
        )


def add_commands(commands) -> None:
    predict = commands.add_parser("predict", help="find hands and name their gestures", description=PREDICT_DESCRIPTION)
    predict.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...) or videos (.mp4, .mov, ...)"
    )
    add_model_arguments(predict)
    predict.add_argument(
        "--min-confidence", type=float, default=None, help="below this gesture probability a hand is 'unknown'"
    )
    predict.add_argument("--detector-threshold", type=float, default=None, help="minimum detector score")
    predict.add_argument("--json", action="store_true", help="print one JSON object per image, one per line")
    predict.add_argument(
        "--save-dir",
        default=None,
        help="write annotated images here as STEM.jpg (STEM-1.jpg, ... when taken: never overwrites)",
    )
    predict.set_defaults(func=predict_command)
