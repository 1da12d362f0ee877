"""The one rule for ``keep_ratio``: a real number in ``[0.05, 1.0]``."""

from __future__ import annotations

import math
import numbers

MIN_KEEP_RATIO = 0.05
MAX_KEEP_RATIO = 1.0


def validate_keep_ratio(value: object, name: str = "keep_ratio") -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming the argument and range.

    Bools, strings, NaN, infinities and values outside ``[0.05, 1.0]`` are rejected.

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
        as_float = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(as_float) and MIN_KEEP_RATIO <= as_float <= MAX_KEEP_RATIO
    if not ok:
        raise ValueError(
            f"`{name}` must be a real number in [{MIN_KEEP_RATIO}, {MAX_KEEP_RATIO}], got {value!r}"
        )
    return as_float
