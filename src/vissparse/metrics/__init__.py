"""torchmetrics metrics of pruning: speedup, accuracy delta, latency.

The functional twins live in ``vissparse.metrics.functional``.

Example:
    >>> import torch
    >>> from vissparse.metrics import Speedup
    >>> Speedup()(torch.tensor([8.0]), torch.tensor([2.0]))
    tensor(4., dtype=torch.float64)
"""

from vissparse.metrics.accuracy_delta import AccuracyDelta
from vissparse.metrics.latency import Latency
from vissparse.metrics.speedup import Speedup

__all__ = ["AccuracyDelta", "Latency", "Speedup"]
