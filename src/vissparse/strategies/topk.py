"""Top-k selection: keep exactly ``ceil(keep_ratio * n_valid)`` tokens per image."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vissparse.keep_ratio import validate_keep_ratio
from vissparse.strategies.base import MaskStrategy, check_valid
from vissparse.strategies.registry import register_strategy

# keep_ratio * n is computed in binary floating point: 0.7 * 10 == 7.000000000000001,
# whose ceil would be 8, and the exact value of the float 0.1 is a hair above 1/10. A
# product within this tolerance of an integer counts as that integer.
INTEGER_TOL = 1e-6


def kept_count(keep_ratio: float, n_valid: int) -> int:
    """``ceil(keep_ratio * n_valid)`` clamped to ``[1, n_valid]`` (0 when ``n_valid`` is 0).

    A product within ``INTEGER_TOL`` of an integer counts as that integer, so decimal
    ratios behave as written (``0.1 * 10`` keeps 1 token, ``0.7 * 10`` keeps 7).

    Example:
        >>> kept_count(0.1, 576), kept_count(0.7, 10), kept_count(0.05, 3)
        (58, 7, 1)
    """
    if n_valid <= 0:
        return 0
    product = keep_ratio * n_valid
    nearest = round(product)
    k = nearest if abs(product - nearest) <= INTEGER_TOL else math.ceil(product)
    return min(max(k, 1), n_valid)


def kept_counts(keep_ratio: float, n_valid: Tensor) -> Tensor:
    """:func:`kept_count` of every element of ``n_valid``, computed where it lives.

    The same float64 arithmetic as :func:`kept_count`, as tensor ops: a per-row budget
    with no host synchronisation.

    Example:
        >>> kept_counts(0.7, torch.tensor([10, 0, 3, 576])).tolist()
        [7, 0, 3, 404]
    """
    n = n_valid.to(torch.float64)
    product = n * keep_ratio
    nearest = torch.round(product)
    k = torch.where((product - nearest).abs() <= INTEGER_TOL, nearest, torch.ceil(product))
    return torch.minimum(k.clamp(min=1), n).long()


def topk_mask(scores: Tensor, counts: Tensor, valid: Tensor | None = None) -> Tensor:
    """Keep the ``counts[b]`` highest-scoring valid tokens of each row ``b``.

    Ties go to the lower index (stable sort); NaN scores rank lowest; invalid tokens are
    ranked after every valid one, so they are never kept while ``counts <= n_valid``.

    Example:
        >>> topk_mask(torch.tensor([[0.5, 0.9, 0.5, 0.1]]), torch.tensor([2])).tolist()
        [[True, True, False, False]]
    """
    s = torch.nan_to_num(scores.float(), nan=-math.inf)
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    if valid is not None:
        valid_sorted = valid.gather(1, order)
        # A second stable sort on validity alone keeps the score order within each group.
        regroup = torch.sort(valid_sorted.to(torch.int8), dim=1, descending=True, stable=True)
        order = order.gather(1, regroup.indices)
    ranks = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks < counts.to(ranks.device).unsqueeze(1)


@register_strategy
class TopKStrategy(MaskStrategy):
    """Keep the top ``k = ceil(keep_ratio * n_valid)`` tokens per image (name ``"topk"``).

    ``k`` is clamped to ``[1, n_valid]``; ties go to the lower index; the result is
    deterministic and never keeps an invalid (padding) token. Masks are nested: the mask
    at a lower ratio is a subset of the mask at a higher one. Sync-free: the per-row
    budgets are computed on the scores' device.

    Example:
        >>> TopKStrategy().select(torch.tensor([[0.1, 0.9, 0.5, 0.3]]), 0.5).tolist()
        [[False, True, True, False]]
    """

    name = "topk"

    def select(self, scores: Tensor, keep_ratio: float, valid: Tensor | None = None) -> Tensor:
        """Return the ``[B, N]`` bool keep mask."""
        keep_ratio = validate_keep_ratio(keep_ratio)
        if scores.dim() != 2:
            raise ValueError(f"`scores` must have shape [B, N], got {tuple(scores.shape)}")
        check_valid(valid, scores.shape)
        if valid is None:
            n_valid = torch.full(scores.shape[:1], scores.shape[1], device=scores.device)
        else:
            n_valid = valid.sum(dim=1)
        return topk_mask(scores, kept_counts(keep_ratio, n_valid), valid)
