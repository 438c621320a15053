"""The `hybrid` command: every command lives here, one module per group (data, predict, eval, push);
the library it calls returns values and raises, and only these modules print or set the exit status."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from hybrid.cli import data, evaluate, predict, push


class Parser(argparse.ArgumentParser):
    """Every parser of the CLI: a prefix of an option must not silently mean another option."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hybrid", description="Find hands and name their gestures; evaluate, inspect data, push.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in (data, predict, evaluate, push):
        group.add_commands(commands)
    return parser


def error(text: object) -> None:
    """One error line on stderr."""
    print(f"hybrid: error: {text}", file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as failure:
        # Bad input: one clear line, no traceback (use -v for the traceback).
        if args.verbose:
            raise
        error(failure)
        return 2
