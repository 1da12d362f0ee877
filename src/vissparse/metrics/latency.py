"""``Latency``: mean and percentiles of per-call latency in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vissparse.metrics.functional import latency_stats


class Latency(Metric):
    """Latency statistics; every value is kept (``cat``) so percentiles stay exact.

    Example:
        >>> metric = Latency(percentiles=(50,))
        >>> metric.update(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        >>> {k: float(v) for k, v in metric.compute().items()}
        {'mean': 2.5, 'p50': 2.5}
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False
    plot_lower_bound = 0.0
    values: list[Tensor]

    def __init__(self, percentiles: Sequence[float] = (50, 90, 99), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not percentiles or any(not 0 <= p <= 100 for p in percentiles):
            raise ValueError(f"`percentiles` must be values in [0, 100], got {percentiles!r}")
        self.percentiles = tuple(percentiles)
        self.add_state("values", [], dist_reduce_fx="cat")

    def update(self, latency_ms: Tensor | float) -> None:
        """Add one or more latencies (milliseconds)."""
        self.values.append(
            torch.as_tensor(latency_ms, dtype=torch.float64).flatten().to(self.device)
        )

    def compute(self) -> dict[str, Tensor]:
        """``{"mean": ..., "p50": ..., ...}`` over everything seen."""
        return latency_stats(dim_zero_cat(self.values), self.percentiles)

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot the statistics with matplotlib."""
        return self._plot(val, ax)
