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
    from hybrid.data import read_dataset, dataset_stats

    stats = dataset_stats(read_dataset(args.path, format=args.format, split=args.split, merge_labels=args.merge_labels))
    if args.json:
        _print_json(stats)
    else:
        print(f"images: {stats['images']}\nboxes:  {stats['boxes']}")
        for name, count in stats["labels"].items():
            print(f"  {name:<20} {count}")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybrid", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="inspect and fetch datasets").add_subparsers(dest="data_command", required=True)
    stats = data.add_parser("stats", help="count images, boxes and labels of a dataset folder")
    stats.add_argument("path", help="dataset folder, or a registered dataset name")
    stats.add_argument("--format", default=None, help="voc | yolo | imagefolder | hagrid | hf (default: detected)")
    stats.add_argument("--split", default=None, choices=["train", "val", "test"],
                       help="one split (upstream where the data has it, else seeded; see hybrid.data.split_records)")
    stats.add_argument("--merge-labels", action="store_true", help="merge finger-count names ('5-hand', 'five' -> '5')")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=_data_stats)
    fetch = data.add_parser("fetch", help="download a registered public dataset, checksum-verified")
    fetch.add_argument("name")
    fetch.add_argument("--root", default=None, help="where to put it (default: $HYBRID_DATA, then ../shared/data)")
    fetch.set_defaults(func=_data_fetch)

    predict = commands.add_parser("predict", help="find hands and name their gestures")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--detector", default=None, help="Hub id[@revision] or folder (default: $HYBRID_DETECTOR, then models/detector)")
    predict.add_argument("--classifier", default=None, help="Hub id[@revision] or folder (default: $HYBRID_CLASSIFIER, then models/classifier)")
    predict.add_argument("--min-confidence", type=float, default=None, help="below this gesture probability a hand is 'unknown'")
    predict.add_argument("--detector-threshold", type=float, default=None, help="minimum detector score")
    predict.add_argument("--json", action="store_true", help="print JSON per image")
    predict.add_argument("--save-dir", default=None, help="write annotated images here")
    predict.set_defaults(func=_predict)

    evaluate = commands.add_parser("eval", help="end-to-end metrics on a labelled detection dataset")
    evaluate.add_argument("dataset", help="dataset folder or registered name")
    evaluate.add_argument("--split", default="test", help="which split to evaluate (default: test)")
    evaluate.add_argument("--detector", default=None)
    evaluate.add_argument("--classifier", default=None)
    evaluate.add_argument("--gesture-detector", default=None, help="one-stage gesture detector to compare against")
    evaluate.add_argument("--format", default=None)
    evaluate.add_argument("--limit", type=int, default=None, help="first N images only")
    evaluate.add_argument("--output", default=None, help="folder for the confusion matrix PNG and metrics JSON")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=_eval)

    push = commands.add_parser("push", help="push a trained model folder to the Hub in one commit (token: $HF_TOKEN "
                               "or `hf auth login`); prints REPO_ID@COMMIT")
    push.add_argument("kind", choices=["classifier", "detector"])
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    push.add_argument("--commit-message", default=None)
    push.set_defaults(func=_push)

    space = commands.add_parser("push-space", help="push the Gradio Space (app.py, hybrid/, requirements.txt, README.md) "
                                "with both models pinned to their current commit in hybrid_space.json")
    space.add_argument("repo_id")
    space.add_argument("--classifier", required=True, help="Hub id[@revision]")
    space.add_argument("--detector", required=True, help="Hub id[@revision]")
    space.add_argument("--private", action="store_true")
    space.set_defaults(func=_push_space)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
