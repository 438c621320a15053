"""The `hybrid` command: argument parsing only; each command calls into the library."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Optional, Sequence


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


# --- data -------------------------------------------------------------------------------------

def _data_stats(args: argparse.Namespace) -> int:
    from hybrid.data import dataset_stats, read_dataset

    bad: list[str] = []
    records = read_dataset(args.path, format=args.format, split=args.split, merge_labels=args.merge_labels,
                           bad_images=bad)
    stats = {**dataset_stats(records), "bad_images": bad}
    if args.json:
        _print_json(stats)
    else:
        print(f"images: {stats['images']}\nboxes:  {stats['boxes']}")
        for name, count in stats["labels"].items():
            print(f"  {name:<20} {count}")
        if bad:
            print(f"bad images (skipped): {len(bad)}")
            for line in bad:
                print(f"  {line}")
    return 1 if bad else 0


def _data_fetch(args: argparse.Namespace) -> int:
    from hybrid.data.registry import FetchError, fetch

    try:
        print(fetch(args.name, root=args.root))
    except FetchError as error:
        print(f"hybrid: error: {error}", file=sys.stderr)
        return 1
    return 0


# --- models -----------------------------------------------------------------------------------

def _predict(args: argparse.Namespace) -> int:
    from hybrid.pipeline import predict_command

    return predict_command(args)


def _eval(args: argparse.Namespace) -> int:
    from hybrid.evaluate import eval_command

    return eval_command(args)


def _push(args: argparse.Namespace) -> int:
    from hybrid.hub import push_command

    return push_command(args)


def _push_space(args: argparse.Namespace) -> int:
    from hybrid.hub import push_space_command

    return push_space_command(args)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False everywhere: a prefix of an option must not silently mean another option.
    parser = argparse.ArgumentParser(prog="hybrid", description=__doc__, allow_abbrev=False)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="inspect and fetch datasets", allow_abbrev=False).add_subparsers(
        dest="data_command", required=True)
    stats = data.add_parser("stats", allow_abbrev=False, help="count images, boxes and labels of a dataset folder",
                            description="Count images, boxes and labels. Unreadable images (corrupt, or over the "
                            "pixel limit) are skipped and listed; the exit status is then 1.")
    stats.add_argument("path", help="dataset folder, or a registered dataset name")
    stats.add_argument("--format", default=None, help="voc | yolo | imagefolder | hagrid | hf (default: detected)")
    stats.add_argument("--split", default=None, choices=["train", "val", "test"],
                       help="one split (upstream where the data has it, else seeded; see hybrid.data.split_records)")
    stats.add_argument("--merge-labels", action="store_true",
                       help="merge finger-count names ('5-hand', 'five' -> '5')")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=_data_stats)
    fetch = data.add_parser("fetch", allow_abbrev=False,
                            help="download a registered public dataset, checksum-verified")
    fetch.add_argument("name")
    fetch.add_argument("--root", default=None, help="where to put it (default: $HYBRID_DATA, then ../shared/data)")
    fetch.set_defaults(func=_data_fetch)

    predict = commands.add_parser(
        "predict", allow_abbrev=False, help="find hands and name their gestures",
        description="Find hands and name their gestures. An image that cannot be read gets an error line (with "
        "--json: a JSON line {\"image\", \"error\"}) and the others go on; the exit status is then 1 "
        "(2 for bad arguments or models).")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--detector", default=None,
                         help="Hub id[@revision] or folder (default: $HYBRID_DETECTOR, then models/detector)")
    predict.add_argument("--classifier", default=None,
                         help="Hub id[@revision] or folder (default: $HYBRID_CLASSIFIER, then models/classifier)")
    predict.add_argument("--min-confidence", type=float, default=None,
                         help="below this gesture probability a hand is 'unknown'")
    predict.add_argument("--detector-threshold", type=float, default=None, help="minimum detector score")
    predict.add_argument("--json", action="store_true", help="print JSON per image")
    predict.add_argument("--save-dir", default=None,
                         help="write annotated images here as STEM.jpg (STEM-1.jpg, ... when taken: never overwrites)")
    predict.set_defaults(func=_predict)

    evaluate = commands.add_parser(
        "eval", allow_abbrev=False, help="end-to-end metrics on a labelled detection dataset",
        description="End-to-end metrics on a labelled detection dataset. Says first which split it scores and how "
        "many images, and lists ground-truth labels the classifier does not know (they count as errors).")
    evaluate.add_argument("dataset", help="dataset folder or registered name")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                          help="split to score (default: test): the dataset's own split where it has one, else the "
                          "seeded split of hybrid.data.split_records; 'all' scores every image")
    evaluate.add_argument("--detector", default=None)
    evaluate.add_argument("--classifier", default=None)
    evaluate.add_argument("--gesture-detector", default=None, help="one-stage gesture detector to compare against")
    evaluate.add_argument("--format", default=None)
    evaluate.add_argument("--limit", type=_positive_int, default=None, help="first N images only")
    evaluate.add_argument("--output", default=None, help="folder for the confusion matrix PNG and metrics JSON")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=_eval)

    push = commands.add_parser("push", allow_abbrev=False,
                               help="push a trained model folder to the Hub in one commit (token: $HF_TOKEN "
                               "or `hf auth login`); prints REPO_ID@COMMIT")
    push.add_argument("kind", choices=["classifier", "detector"])
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    push.add_argument("--commit-message", default=None)
    push.set_defaults(func=_push)

    space = commands.add_parser("push-space", allow_abbrev=False,
                                help="push the Gradio Space (app.py, hybrid/, requirements.txt, README.md) "
                                "with both models pinned to their current commit in hybrid_space.json")
    space.add_argument("repo_id")
    space.add_argument("--classifier", required=True, help="Hub id[@revision]")
    space.add_argument("--detector", required=True, help="Hub id[@revision]")
    space.add_argument("--private", action="store_true")
    space.set_defaults(func=_push_space)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Bad input: one clear line, no traceback (use -v for the traceback).
        if args.verbose:
            raise
        print(f"hybrid: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
