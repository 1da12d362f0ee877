"""``Speedup``: total baseline latency over total pruned latency."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from vissparse.metrics.functional import speedup


class Speedup(Metric):
    """Paired speedup; sums reduce exactly across processes.

    Example:
        >>> metric = Speedup()
        >>> metric.update(torch.tensor([10.0, 30.0]), torch.tensor([5.0, 5.0]))
        >>> metric.compute()
        tensor(4., dtype=torch.float64)
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False
    plot_lower_bound = 0.0
    baseline_ms: Tensor
    pruned_ms: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("baseline_ms", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pruned_ms", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, baseline_ms: Tensor, pruned_ms: Tensor) -> None:
        """Add paired latencies (milliseconds)."""
        baseline_ms, pruned_ms = torch.as_tensor(baseline_ms), torch.as_tensor(pruned_ms)
        speedup(baseline_ms, pruned_ms)  # validates the pairing
        self.baseline_ms += baseline_ms.double().sum().to(self.device)
        self.pruned_ms += pruned_ms.double().sum().to(self.device)

    def compute(self) -> Tensor:
        """Speedup over everything seen."""
        return speedup(self.baseline_ms, self.pruned_ms)

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot the value (or a list of values) with matplotlib."""
        return self._plot(val, ax)
