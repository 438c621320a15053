"""Read a user's YAML file (a data.yaml, a recipe) as plain data, within bounds, or fail with one line.

PyYAML's `safe_load` builds only plain data, but an alias (`*name`) stands for its whole anchored value: a
500-byte "billion laughs" file is 9**9 strings to anything that walks it (str, json.dumps, a loop), gigabytes.
The YAML files this project reads never need one, so aliases are refused with their line, from the parser's
events before anything is built. The file must be a regular file (a FIFO would block the read) of at most
MAX_YAML_BYTES, UTF-8, nested at most MAX_YAML_DEPTH levels (PyYAML's composers recurse: a few thousand '['
end in RecursionError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from hybrid.limits import MAX_YAML_BYTES, MAX_YAML_DEPTH

# libyaml's parser and loader where PyYAML has them: about 10x faster than its pure-Python ones
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TOO_LARGE = f"over the limit of {MAX_YAML_BYTES // 1024} KB for a YAML file"


class _Refused(Exception):
    """A file or document this module does not read; the message says why."""


def _check_events(text: str) -> None:
    """Refuse an alias, or nesting deeper than MAX_YAML_DEPTH, from the parser's events, before anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(f"line {event.start_mark.line + 1}: YAML aliases (*name) are not accepted; write the value")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _Refused(f"line {event.start_mark.line + 1}: nested deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _text(path: Path) -> str:
    """The file's text; `_Refused` for anything but a regular UTF-8 file of at most MAX_YAML_BYTES."""
    if not path.exists():
        raise _Refused("file not found")
    if not path.is_file():  # before open(): opening a FIFO blocks until someone writes to it
        raise _Refused("not a regular file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
    except OSError as error:
        raise _Refused(f"cannot be read ({error.strerror or error})") from None
    if len(data) > MAX_YAML_BYTES:
        raise _Refused(_TOO_LARGE)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("not UTF-8 text") from None


def load_yaml(path: Path, error: type[Exception] = ValueError, where: Optional[str] = None) -> Any:
    """The plain data in the YAML file `path` (None when it is empty). Any problem (missing or not a regular file,
    over MAX_YAML_BYTES, not UTF-8, malformed, an alias, nested over MAX_YAML_DEPTH, a value PyYAML cannot build)
    raises `error` with one line naming `where` (default: the path)."""
    where = where or str(path)
    try:
        text = _text(Path(path))
    except _Refused as refused:
        raise error(f"{where}: {refused}") from None
    return parse_yaml(text, where, error)


def parse_yaml(text: str, where: str, error: type[Exception] = ValueError) -> Any:
    """`load_yaml` for text already read (e.g. a model card's front matter): the same checks but the file's."""
    try:
        if len(text) > MAX_YAML_BYTES:
            raise _Refused(_TOO_LARGE)
        _check_events(text)
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader; aliases were refused above)
    except _Refused as refused:
        raise error(f"{where}: {refused}") from None
    except yaml.YAMLError as failure:
        raise error(f"{where}: malformed YAML ({' '.join(str(failure).split())})") from None
    except (ValueError, OverflowError, RecursionError) as failure:  # e.g. an int of more than 4300 digits
        raise error(f"{where}: a value YAML cannot read ({failure})") from None
