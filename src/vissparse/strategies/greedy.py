"""Greedy-order methods (DivPrune, MMTok, SCOPE): the pick order as scores, stopped at k.

A greedy method picks one token after another; the ``p``-th pick of ``n`` scores
``(n - p) / n`` (:func:`ranks_from_order`), so top-k over the scores keeps the first
``k`` picks. Under top-k the loop need not run past ``k`` (:func:`plan_greedy`): the
picks after ``k`` only decide tokens top-k drops.

Example:
    >>> ranks_from_order(torch.tensor([[2, 0]]), 4).tolist()
    [[0.75, 0.0, 1.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from vissparse.keep_ratio import validate_keep_ratio
from vissparse.strategies.base import MaskStrategy, TokenScorer, select_by_scores
from vissparse.strategies.context import PruningContext, Selection

__all__ = ["plan_greedy", "ranks_from_order"]


def ranks_from_order(order: Tensor, n: int) -> Tensor:
    """``[B, n]`` float32: ``(n - p) / n`` for the token at position ``p`` of ``order``.

    ``order`` is ``[B, steps]`` (no ``-1`` entries); tokens not in it score 0.

    Example:
        >>> ranks_from_order(torch.tensor([[1, 2, 0]]), 4).tolist()
        [[0.5, 1.0, 0.75, 0.0]]
    """
    b, steps = order.shape
    ranks = torch.arange(n, n - steps, -1, dtype=torch.float32, device=order.device) / max(n, 1)
    scores = torch.zeros(b, n, dtype=torch.float32, device=order.device)
    return scores.scatter_(1, order, ranks.expand(b, steps))


def plan_greedy(
    scorer: TokenScorer, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy,
    order: Callable[[int], Tensor], newlines: bool = True,
) -> Selection:  # fmt: skip
    """``scorer``'s plan: under top-k, its first ``k`` picks only (``order(k)``).

    ``order(steps)`` gives ``[B, >= steps]`` picks; ``k`` is that of the padded width,
    which bounds every row's, so no count is read back (a row with a smaller ``k``
    keeps its first picks all the same; LLaVA-NeXT's newlines take their row's best
    score). Any other strategy, or newline tokens where ``newlines`` is false, gets
    :meth:`TokenScorer.plan` over the whole order.

    Example:
        >>> from vissparse.strategies import TopKStrategy, build_scorer
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]]])
        >>> ctx = PruningContext(tokens, torch.zeros(1, 2))
        >>> plan_greedy(build_scorer("divprune"), ctx, 0.5, TopKStrategy(),
        ...             lambda k: torch.tensor([[3, 0]])[:, :k]).keep.tolist()
        [[True, False, False, True]]
    """
    from vissparse.strategies.topk import TopKStrategy, kept_count

    keep_ratio = validate_keep_ratio(keep_ratio)
    if type(strategy) is not TopKStrategy or (not newlines and ctx.present is not None):
        return TokenScorer.plan(scorer, ctx, keep_ratio, strategy)
    b, n = ctx.image_tokens.shape[:2]
    steps = kept_count(keep_ratio, n) if b else 0
    scores = ranks_from_order(order(steps)[:, :steps], n)
    return select_by_scores(ctx, scores, keep_ratio, strategy, scorer)
