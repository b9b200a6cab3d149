"""Numbers given on the command line: sizes, counts and seconds.

Only what it says is accepted: ASCII digits, an optional suffix, nothing around
them — no spaces, no `_` separators, no signs, no Unicode digits, no `128MB`.
"""
from __future__ import annotations

import math
import re

from .errors import UsageError

_SIZE = re.compile(r"([0-9]+)([A-Za-z]?)", re.ASCII)
_COUNT = re.compile(r"[0-9]+", re.ASCII)
_SECONDS = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
SHIFTS = {"B": 0, "K": 10, "M": 20, "G": 30, "T": 40}
U64_MAX = (1 << 64) - 1


def parse_size(text: str, what: str, bare: str = "B", limit: int = (1 << 63) - 1) -> int:
    """'128M' -> 134217728: a whole number with an optional suffix B, K, M, G or T
    (powers of 1024, either case); a bare number is in units of `bare` (B: bytes;
    M: MiB, as QEMU's -m).  UsageError for anything else or a value above limit."""
    m = _SIZE.fullmatch(text)
    suffix = m.group(2).upper() if m else ""
    if not m or (suffix and suffix not in SHIFTS):
        unit = "bytes" if bare == "B" else "MiB, as QEMU's -m"
        raise UsageError(f"bad {what} {text!r}: give a whole number with an optional suffix "
                         f"B, K, M, G or T (no suffix: {unit})")
    value = int(m.group(1)) << SHIFTS[suffix or bare]
    if value > limit:
        raise UsageError(f"{what} {text!r} is too large (at most {limit:,} bytes)")
    return value


def parse_count(text: str, what: str, low: int = 1, high: int = U64_MAX) -> int:
    """A whole number of ASCII digits from low to high (UsageError otherwise)."""
    if not _COUNT.fullmatch(text) or not low <= int(text) <= high:
        raise UsageError(f"bad {what} {text!r}: give a whole number from {low} to {high}")
    return int(text)


def parse_seconds(text: str, what: str) -> float:
    """A positive, finite decimal number of seconds ('0.5', '30', '1e3')."""
    value = float(text) if _SECONDS.fullmatch(text) else math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"bad {what} {text!r}: give a positive, finite number of seconds "
                         "(e.g. 0.5 or 30)")
    return value
