"""Window durations as people write them ("30s", "15m", "1h", "1d", "1w") and back."""

from __future__ import annotations

import re

UNITS: dict[str, int] = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
MAX_SECONDS = 366 * 86_400


def parse_duration(value: str | int) -> int:
    """Seconds in `value`: an int of seconds, or digits with a unit (s, m, h, d, w).

    Raises ValueError for anything else, or for a duration outside 1 s .. 366 days.
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '15m'")
    if isinstance(value, int):
        seconds = value
    else:
        match = _PATTERN.match(value.lower())
        if match is None:
            raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 15m, 1h, 1d, 1w")
        seconds = int(match.group(1)) * UNITS[match.group(2) or "s"]
    if not 1 <= seconds <= MAX_SECONDS:
        raise ValueError(f"duration must be between 1s and 366d, got {seconds}s")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact spelling: 3600 -> "1h", 5400 -> "90m", 90 -> "90s"."""
    for unit, size in UNITS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every int is a multiple of 1 s")  # pragma: no cover
