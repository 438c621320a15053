"""Label maps: one name per gesture across datasets.

Finger-count sets name the same gesture differently: the Hands Dataset says `5-hand`, Roboflow v6
says `five`. `canonical_label` maps every finger-count spelling to the bare count '0'..'5', so
'5-hand', 'five', 'Five', '5' all become '5' (and 'fist'/'0-hand'/'zero' become '0').

Sign Language Digits is NOT a finger-count set: its folders '0'..'9' are American Sign Language
digit signs (ASL '0' is an O shape, not a fist; '6'..'9' touch the thumb to a finger). Merging them
with finger counts would teach the classifier that two different hand shapes are one class, so its
reader labels them 'asl-0'..'asl-9' (see `ASL_PREFIX` and the registry), which `canonical_label`
leaves alone. Any name not listed here passes through unchanged.
"""

from __future__ import annotations

ASL_PREFIX = "asl-"

_WORDS = ["zero", "one", "two", "three", "four", "five"]

_ALIASES: dict[str, str] = {}
for _count, _word in enumerate(_WORDS):
    for _spelling in (
        str(_count),
        f"{_count}-hand",
        f"{_count}_hand",
        f"{_count}hand",
        _word,
        f"{_word}-hand",
        f"{_word}_fingers",
        f"{_count}_fingers",
        f"{_count}-fingers",
    ):
        _ALIASES[_spelling] = str(_count)
_ALIASES["fist"] = "0"


def canonical_label(name: str) -> str:
    """The shared name of a finger-count gesture ('5-hand', 'five' -> '5'); other names unchanged."""
    return _ALIASES.get(name.strip().lower(), name)
