"""Argument checks of the batch tool, written once: the API records (`IndexJob`, `OperatorSpec`) and the command
line (`jobs/cli.py`, whose click types refuse what these refuse) call these, so a value means the same everywhere.

Each check returns the value it accepted, or raises `ValueError` naming the argument, what was given and what is
accepted. Booleans are not numbers here (`True` is not a count of 1).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Collection
from typing import Any

# A URL names its scheme (RFC 3986: a letter, then letters, digits, '+', '-', '.') and an authority (`://`).
# One letter is a Windows drive (`C://x`), not a scheme.
_URL = re.compile(r'[A-Za-z][A-Za-z0-9+.-]+://')


def is_url(text: Any) -> bool:
    """Whether `text` (a str, or a path-like) is a URL such as `http://host/a.mp4` or `s3://b/k`, not a local path."""
    return isinstance(text, str) and _URL.match(text) is not None


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def count(name: str, value: Any, minimum: int = 1) -> int:
    """An integer (Python or numpy) of at least `minimum`; raises ValueError otherwise."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f'{name} must be an integer of at least {minimum}, got {value!r}')
    return int(value)


def optional_count(name: str, value: Any, minimum: int = 1) -> int | None:
    """None (the default rule decides), or `count(name, value, minimum)`."""
    return None if value is None else count(name, value, minimum)


def positive(name: str, value: Any, unit: str = '') -> float:
    """A finite number more than 0 (`unit`, e.g. ' of seconds', is said in the message); raises ValueError
    otherwise, NaN and infinity included."""
    if not (_is_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(f'{name} must be a positive number{unit} (finite), got {value!r}')
    return value


def at_least(name: str, value: Any, minimum: float) -> float:
    """A finite number of at least `minimum`; raises ValueError otherwise, NaN and infinity included."""
    if not (_is_real(value) and math.isfinite(value) and value >= minimum):
        raise ValueError(f'{name} must be a finite number of at least {minimum}, got {value!r}')
    return value


def one_of(name: str, value: Any, choices: Collection[Any]) -> Any:
    """`value` if it is one of `choices`; raises ValueError otherwise."""
    if value not in choices:
        raise ValueError(f'{name} must be one of {", ".join(map(repr, choices))}, got {value!r}')
    return value


def before(start: float | None, end: float | None) -> None:
    """A time range `[start, end)` in seconds holds something: raises ValueError when `start >= end` (both given)."""
    if start is not None and end is not None and not start < end:
        raise ValueError(f'--start ({start}) must be before --end ({end})')
