"""``AccuracyDelta``: baseline accuracy minus pruned accuracy on the same samples."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from vissparse.metrics.functional import accuracy_delta


class AccuracyDelta(Metric):
    """Accuracy lost to pruning (lower is better); counts reduce exactly across processes.

    ``accuracy()`` and ``baseline_accuracy()`` read the current counts; inside
    ``metric.sync_context()`` those are the counts of every process.

    Example:
        >>> metric = AccuracyDelta()
        >>> metric.update(torch.tensor([1, 0, 1, 0]), torch.tensor([1, 1, 1, 0]))
        >>> metric.compute()
        tensor(0.2500, dtype=torch.float64)
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0
    correct: Tensor
    baseline_correct: Tensor
    total: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("baseline_correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, correct: Tensor, baseline_correct: Tensor) -> None:
        """Add per-sample correctness (bool or 0/1) of the pruned and the baseline answers."""
        correct, baseline_correct = torch.as_tensor(correct), torch.as_tensor(baseline_correct)
        accuracy_delta(correct, baseline_correct)  # validates shapes
        self.correct += correct.long().sum().to(self.device)
        self.baseline_correct += baseline_correct.long().sum().to(self.device)
        self.total += correct.numel()

    def compute(self) -> Tensor:
        """Baseline accuracy minus pruned accuracy."""
        return (self.baseline_correct - self.correct).double() / self.total

    def accuracy(self) -> Tensor:
        """Pruned accuracy from the current counts."""
        return self.correct.double() / self.total

    def baseline_accuracy(self) -> Tensor:
        """Baseline accuracy from the current counts."""
        return self.baseline_correct.double() / self.total

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot the value (or a list of values) with matplotlib."""
        return self._plot(val, ax)
