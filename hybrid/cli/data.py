"""`hybrid data stats|fetch`: inspect and fetch datasets."""

from __future__ import annotations

import argparse
import json
import sys


def stats_command(args: argparse.Namespace) -> int:
    """Plain output escapes control characters in names (`printable`): a class folder named 'a\\nimages: 9'
    cannot forge a line, nor an ANSI escape reach the terminal."""
    from hybrid.cli.predict import printable
    from hybrid.data import dataset_stats, decodable, read_dataset

    bad: list[str] = []
    records = read_dataset(
        args.path, format=args.format, split=args.split, merge_labels=args.merge_labels, bad_images=bad
    )
    records = decodable(records, bad)
    stats = {**dataset_stats(records), "bad_images": bad}
    if args.json:
        # a name that is not UTF-8 (lone surrogates in Python) becomes JSON escapes, not a UnicodeEncodeError
        print(json.dumps(stats, indent=2, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8"))
    else:
        print(f"images: {stats['images']}\nboxes:  {stats['boxes']}")
        for name, count in stats["labels"].items():
            print(f"  {printable(name):<20} {count}")
        if bad:
            print(f"bad images (skipped): {len(bad)}")
            for line in bad:
                print(f"  {printable(line)}")
    return 1 if bad else 0


def fetch_command(args: argparse.Namespace) -> int:
    from hybrid.data.registry import FetchError, fetch

    try:
        print(fetch(args.name, root=args.root))
    except FetchError as error:
        print(f"hybrid: error: {error}", file=sys.stderr)
        return 1
    return 0


STATS_DESCRIPTION = (
    "Count images, boxes and labels. Every image is decoded: unreadable ones (corrupt, truncated, or over "
    "the pixel limit) are skipped and listed; the exit status is then 1."
)


def add_commands(commands) -> None:
    data = commands.add_parser("data", help="inspect and fetch datasets").add_subparsers(
        dest="data_command", required=True, metavar="COMMAND", help="one of:"
    )
    stats = data.add_parser(
        "stats", help="count images, boxes and labels of a dataset folder", description=STATS_DESCRIPTION
    )
    stats.add_argument("path", help="dataset folder, or a registered dataset name")
    stats.add_argument("--format", default=None, help="voc | yolo | imagefolder | hagrid | hf (default: detected)")
    stats.add_argument(
        "--split",
        default=None,
        choices=["train", "val", "test"],
        help="one split (upstream where the data has it, else seeded; see hybrid.data.split_records)",
    )
    stats.add_argument("--merge-labels", action="store_true", help="merge finger-count names ('5-hand', 'five' -> '5')")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=stats_command)
    fetch = data.add_parser("fetch", help="download a registered public dataset, checksum-verified")
    fetch.add_argument("name", help="a registered dataset name (hands, roboflow, sign-digits, ...)")
    fetch.add_argument("--root", default=None, help="where to put it (default: $HYBRID_DATA, then ../shared/data)")
    fetch.set_defaults(func=fetch_command)
