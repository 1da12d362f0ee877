"""Confidence intervals and paired tests over per-question scores (pure numpy).

A per-question score is 1.0 (right) or 0.0 (wrong), or for a scorer run with several
seeds the mean over seeds (0, 1/3, 2/3, 1 for three). Questions are the unit that is
resampled, so seeds of one question stay together.

Example:
    >>> import numpy as np
    >>> lo, hi = bootstrap_ci(np.array([1.0] * 80 + [0.0] * 20))
    >>> bool(lo < 0.8 < hi)
    True
"""

from __future__ import annotations

import numpy as np

N_BOOTSTRAP = 4000
BOOTSTRAP_SEED = 12345


def _resample_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(values)
    idx = rng.integers(0, n, size=(n_boot, n))
    return values[idx].mean(axis=1)


def bootstrap_ci(
    scores: np.ndarray, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``scores`` (resampling questions).

    Example:
        >>> bootstrap_ci(np.ones(10))
        (1.0, 1.0)
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"`scores` must be a non-empty 1-D array, got shape {scores.shape}")
    means = _resample_means(scores, n_boot, seed)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED
) -> dict[str, float]:
    """Mean difference ``a - b`` on the same questions, its 95% interval and a p-value.

    The p-value is two-sided: twice the bootstrap share of differences on the far side
    of zero (at least ``1 / n_boot``; exactly 1.0 when every question scores the same).

    Example:
        >>> r = paired_bootstrap(np.array([1.0] * 50 + [0.0] * 50), np.zeros(100))
        >>> r["diff"], r["p_value"] < 0.01
        (0.5, True)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"`a` and `b` must be equal non-empty 1-D arrays, got {a.shape}, {b.shape}"
        )
    d = a - b
    if np.all(d == d[0]) and d[0] == 0:
        return {"diff": 0.0, "diff_low": 0.0, "diff_high": 0.0, "p_value": 1.0}
    means = _resample_means(d, n_boot, seed)
    p = 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0)))
    return {"diff": float(d.mean()), "diff_low": float(np.quantile(means, 0.025)),
            "diff_high": float(np.quantile(means, 0.975)),
            "p_value": min(1.0, max(p, 1.0 / n_boot))}  # fmt: skip
