"""The `hybrid` command: every command lives here, one module per group (data, predict, eval, push);
the library it calls returns values and raises, and only these modules print or set the exit status."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Optional, Sequence

from hybrid.cli import data, evaluate, predict, push


class Parser(argparse.ArgumentParser):
    """Every parser of the CLI: a prefix of an option must not silently mean another option."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})


DESCRIPTION = """Find every hand in a photo and name its gesture: a YOLOv8 detector finds the hands, a ResNet-50
classifier names each one. Also scores the models on labelled data, inspects datasets and publishes models
to the Hugging Face Hub."""
EPILOG = """examples:
  hybrid predict photo.jpg                      one line per image: the gesture and probability of each hand
  hybrid predict *.jpg --json --save-dir out/   JSON per image, annotated copies in out/
  hybrid eval hands --split test                end-to-end metrics on a labelled dataset
  hybrid push classifier models/classifier me/gesture-classifier

Models: --detector / --classifier (a Hub id[@revision] or a folder), else $HYBRID_DETECTOR /
$HYBRID_CLASSIFIER, else the pins of a pushed Space (hybrid_space.json), else models/detector and
models/classifier. `hybrid COMMAND --help` lists a command's options."""

# Libraries that log on their own loggers; quiet (WARNING) unless -v. Ultralytics keeps its own handler and
# sets its level when imported, from YOLO_VERBOSE.
LIBRARY_LOGGERS = (
    "timm",
    "ultralytics",
    "httpx",
    "httpx2",
    "httpcore",
    "huggingface_hub",
    "urllib3",
    "filelock",
    "PIL",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hybrid", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug lines, the libraries' own log messages, tracebacks"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=Parser, metavar="COMMAND", help="one of:"
    )
    for group in (data, predict, evaluate, push):
        group.add_commands(commands)
    return parser


class EscapingFormatter(logging.Formatter):
    """Log lines with control characters escaped (`predict.printable`): a file or label name in a message never
    forges a line or reaches the terminal as a command. A traceback (-v) keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return predict.printable(super().formatMessage(record))


def configure_logging(verbose: bool) -> None:
    """Our own lines (the `hybrid` loggers) at INFO, everything at DEBUG with -v; the libraries' at WARNING."""
    if not verbose:
        os.environ.setdefault("YOLO_VERBOSE", "False")  # read when ultralytics is imported
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])
    logging.getLogger("hybrid").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in LIBRARY_LOGGERS:  # also when one was imported (and configured itself) before
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def error(text: object) -> None:
    """One error line on stderr (control characters in it, e.g. from a file name, escaped)."""
    predict.report(text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as failure:
        # Bad input: one clear line, no traceback (use -v for the traceback).
        if args.verbose:
            raise
        error(failure)
        return 2
