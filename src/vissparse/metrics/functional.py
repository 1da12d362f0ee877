"""The math of the metrics, as plain functions (the functional twins)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def speedup(baseline_ms: Tensor, pruned_ms: Tensor) -> Tensor:
    """Total baseline time over total pruned time (a throughput ratio).

    Example:
        >>> speedup(torch.tensor([10.0, 30.0]), torch.tensor([5.0, 5.0]))
        tensor(4., dtype=torch.float64)
    """
    baseline_ms, pruned_ms = torch.as_tensor(baseline_ms), torch.as_tensor(pruned_ms)
    if baseline_ms.shape != pruned_ms.shape:
        raise ValueError(
            f"`baseline_ms` and `pruned_ms` must pair up, got shapes {tuple(baseline_ms.shape)} "
            f"and {tuple(pruned_ms.shape)}"
        )
    return baseline_ms.double().sum() / pruned_ms.double().sum()


def accuracy_delta(correct: Tensor, baseline_correct: Tensor) -> Tensor:
    """Baseline accuracy minus pruned accuracy on the same samples.

    Example:
        >>> accuracy_delta(torch.tensor([1, 0, 1, 0]), torch.tensor([1, 1, 1, 0]))
        tensor(0.2500, dtype=torch.float64)
    """
    correct, baseline_correct = torch.as_tensor(correct), torch.as_tensor(baseline_correct)
    if correct.shape != baseline_correct.shape or correct.numel() == 0:
        raise ValueError("`correct` and `baseline_correct` must be non-empty and of one shape")
    return baseline_correct.double().mean() - correct.double().mean()


def latency_stats(
    latency_ms: Tensor, percentiles: Sequence[float] = (50, 90, 99)
) -> dict[str, Tensor]:
    """Mean and percentiles (linear interpolation) of latencies in milliseconds.

    Example:
        >>> stats = latency_stats(torch.tensor([1.0, 2.0, 3.0, 4.0]), percentiles=(50,))
        >>> {k: round(float(v), 2) for k, v in stats.items()}
        {'mean': 2.5, 'p50': 2.5}
    """
    values = torch.as_tensor(latency_ms).double().flatten()
    if values.numel() == 0:
        raise ValueError("`latency_ms` holds no measurements")
    out = {"mean": values.mean()}
    for p in percentiles:
        out[f"p{p:g}"] = torch.quantile(values, float(p) / 100.0)
    return out
