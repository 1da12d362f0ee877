"""The one rule for ``keep_ratio``: a real number in ``[0.05, 1.0]``."""

from __future__ import annotations

import math
import numbers

MIN_KEEP_RATIO = 0.05
MAX_KEEP_RATIO = 1.0


def _as_written(value: object) -> float:
    """``value`` as a Python float, through its shortest repr for other real types.

    ``float(np.float32(0.1))`` is 0.10000000149..., which would keep 101 of 1000 tokens;
    numpy prints the float32 as ``0.1``, and that is the value the user wrote.
    """
    if type(value) in (float, int):
        return float(value)  # type: ignore[arg-type]
    try:
        return float(str(value))
    except ValueError:  # e.g. Fraction's "1/10"
        return float(value)  # type: ignore[arg-type]


def validate_keep_ratio(value: object, name: str = "keep_ratio") -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming the argument and range.

    Bools, strings, NaN, infinities and values outside ``[0.05, 1.0]`` are rejected.
    Other real types (numpy scalars) are read as written: ``np.float32(0.1)`` is 0.1.

    Example:
        >>> validate_keep_ratio(0.25)
        0.25
        >>> validate_keep_ratio(2)
        Traceback (most recent call last):
        ...
        ValueError: `keep_ratio` must be a real number in [0.05, 1.0], got 2
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        as_float = _as_written(value)
        ok = math.isfinite(as_float) and MIN_KEEP_RATIO <= as_float <= MAX_KEEP_RATIO
    if not ok:
        raise ValueError(
            f"`{name}` must be a real number in [{MIN_KEEP_RATIO}, {MAX_KEEP_RATIO}], got {value!r}"
        )
    return as_float
