"""Wall-clock timing that is honest on CPU and GPU alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

R = TypeVar("R")


def synchronize() -> None:
    """Wait for queued CUDA work, so the clock reads finished work (no-op on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], R]) -> tuple[R, float]:
    """Run ``fn()`` and return its result and its wall time in milliseconds.

    Example:
        >>> result, ms = timed(lambda: sum(range(10)))
        >>> result, ms >= 0
        (45, True)
    """
    synchronize()
    start = time.perf_counter()
    result = fn()
    synchronize()
    return result, (time.perf_counter() - start) * 1e3


def median(values: Sequence[float]) -> float:
    """The median, with a clear error for an empty sequence.

    Example:
        >>> median([3.0, 1.0, 2.0])
        2.0
    """
    if not values:
        raise ValueError("cannot take the median of no measurements")
    return float(statistics.median(values))


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (linear interpolation), ``0 <= q <= 1``.

    Example:
        >>> quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.25)
        2.0
    """
    if not values:
        raise ValueError("cannot take a quantile of no measurements")
    return float(torch.quantile(torch.tensor(list(values), dtype=torch.float64), q))
