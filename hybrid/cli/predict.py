"""`hybrid predict IMG|VIDEO...`: find hands and name their gestures; optionally save annotated images.
A video (by its suffix) gets tracked hands with steady gestures (hybrid.video): JSON lines per frame and,
with --save-dir, an annotated copy."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional

from PIL import Image


def check_output_folder(folder: Path, flag: str) -> None:
    """Refuse, before any work, an output folder (`flag` names the option) that is a file or cannot be
    created or written; creates nothing."""
    existing = next(path for path in (folder, *folder.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {folder}: {existing} is a file, expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {folder}: {existing} is not writable")


def save_unique(image: Image.Image, save_dir: Path, stem: str) -> Path:
    """Save `image` as save_dir/STEM.jpg, or STEM-1.jpg, STEM-2.jpg, ... when taken; never replaces a file.
    Written whole first (hybrid.files), then hard-linked in place: the link is atomic and fails on an
    existing name, so no file is half-written or overwritten, even by a concurrent run."""
    from hybrid.files import atomic_file

    staged = save_dir / f".{stem}.{os.getpid()}.staged.jpg"
    with atomic_file(staged) as tmp:
        image.save(tmp, format="JPEG", quality=90)
    try:
        number = 0
        while True:
            target = save_dir / (f"{stem}.jpg" if number == 0 else f"{stem}-{number}.jpg")
            try:
                os.link(staged, target)
                return target
            except FileExistsError:
                number += 1
    finally:
        staged.unlink(missing_ok=True)


def model_source(given: Optional[str], kind: str) -> str:
    """--detector/--classifier, else $HYBRID_<KIND>, else the Space pin, else models/<kind>."""
    if given:
        return given
    from hybrid.hub import default_model

    return default_model(kind)


def _probability(flag: str, value: Optional[float]) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{flag} must be between 0 and 1, got {value}")


def predict_command(args: argparse.Namespace) -> int:
    """`hybrid predict IMG... [--json] [--save-dir DIR]`. With --json: one JSON object per image, one per
    line ({"image", "width", "height", "hands": [Hand.to_dict()...]}, plus "annotated" with --save-dir).
    An unreadable image (corrupt, missing, too large) gets an error line on stderr (with --json also its
    JSON line {"image", "error"}) and the others go on; the exit status is then 1."""
    from hybrid.images import ImageError, load_image
    from hybrid.pipeline import HybridPipeline, draw_hands, image_result

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
            image = load_image(path)
        except ImageError as error:  # report it, go on with the other images
            print(f"hybrid: error: {error}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps({"image": str(path), "error": str(error)}, ensure_ascii=False), flush=True)
            failed += 1
            continue
        hands = pipe(image)[0]
        result = image_result(path, image, hands)
        if save_dir:
            target = save_unique(draw_hands(image, hands, pipe.classifier.label_names), save_dir, Path(path).stem)
            result["annotated"] = str(target)
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            found = ", ".join(f"{h.label} {h.probability:.0%}" for h in hands) or "no hands"
            print(f"{path}: {found}", flush=True)
    return 1 if failed else 0


VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")


def is_video(path: str) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def unique_stem(save_dir: Path, stem: str, suffixes: tuple[str, ...]) -> str:
    """STEM, or STEM-1, STEM-2, ... : the first name for which no STEM.<suffix> exists in save_dir."""
    number = 0
    while any((save_dir / f"{stem if number == 0 else f'{stem}-{number}'}{s}").exists() for s in suffixes):
        number += 1
    return stem if number == 0 else f"{stem}-{number}"


def predict_video(pipe, path: Path, save_dir: Optional[Path], as_json: bool) -> int:
    """Track the hands of one video. With save_dir: STEM.mp4 (annotated) and STEM.jsonl (one JSON line per
    frame), both written whole or not at all; without it, the JSON lines on stdout (--json) or one summary
    line. A video that cannot be read gets one error line; returns the number of failures (0 or 1)."""
    from contextlib import ExitStack

    from tqdm import tqdm

    from hybrid.files import atomic_file
    from hybrid.video import VideoError, probe_video, track_video

    try:
        info = probe_video(path)
        with ExitStack() as stack:
            lines, video = None, None
            if save_dir:
                stem = unique_stem(save_dir, path.stem, (".mp4", ".jsonl"))
                video = save_dir / f"{stem}.mp4"
                lines = stack.enter_context(atomic_file(save_dir / f"{stem}.jsonl")).open("w", encoding="utf-8")
                stack.callback(lines.close)
            bar = stack.enter_context(
                tqdm(total=info.frames or None, unit="frame", desc=path.name, disable=not sys.stderr.isatty())
            )
            tracks: dict[int, list[str]] = {}
            for frame in track_video(pipe, path, output=video):
                bar.update()
                text = json.dumps(frame.to_dict(), ensure_ascii=False)
                if lines or as_json:
                    print(text, file=lines or sys.stdout, flush=True)
                for hand in frame.hands:
                    tracks.setdefault(hand.track_id, []).append(hand.label)
    except VideoError as error:
        print(f"hybrid: error: {error}", file=sys.stderr, flush=True)
        if as_json and not save_dir:
            print(json.dumps({"video": str(path), "error": str(error)}, ensure_ascii=False), flush=True)
        return 1
    if not (as_json and not save_dir):
        print(f"{path}: {video_summary(tracks)}" + (f" -> {video}" if video else ""), flush=True)
    return 0


def video_summary(tracks: dict[int, list[str]]) -> str:
    """'#1 5 (92% of 40 frames), #2 ...' : each track's most frequent gesture and its share of the track's frames."""
    if not tracks:
        return "no hands"
    parts = []
    for track_id, labels in sorted(tracks.items()):
        top = max(set(labels), key=labels.count)
        parts.append(f"#{track_id} {top} ({labels.count(top) / len(labels):.0%} of {len(labels)} frames)")
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
