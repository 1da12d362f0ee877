"""DivPrune: keep a diverse subset of the image tokens (greedy max-min diversity).

Alvar, Singh, Akbari and Zhang, "DivPrune: Diversity-based Visual Token Pruning for Large
Multimodal Models", CVPR 2025 (arXiv:2503.02175). With the cosine distance
``d(i, j) = 1 - cos(x_i, x_j)`` between post-projector image tokens, DivPrune solves the
Max-Min Diversity Problem greedily:

1. the first token kept is the one farthest from its nearest other token,
   ``argmax_j min_{i != j} d(i, j)``;
2. each next token is the one farthest from the tokens kept so far,
   ``argmax_j min_{s in S} d(s, j)``;

ties go to the lower index (``torch.argmax``), as in the paper's code.

The greedy order does not depend on how many tokens are kept, so this is a scorer: the
``p``-th token picked scores ``(n - p) / n``, and top-k of those scores is exactly
DivPrune's set of ``k`` tokens for every ``k``. Deviations from the original:

- it runs on a batch (each row on its own valid tokens) instead of batch size 1;
- a token already kept is never picked again (the paper's loop picks a kept token again
  when every other token is at distance 0 from the kept ones, e.g. duplicates, and then
  keeps fewer than ``k`` distinct tokens);
- distances are made exactly symmetric, so ties go to the lower index in a batch and
  alone alike;
- it orders every token rather than stopping at ``k``: ``n`` greedy steps per image, each
  a vectorised ``O(n)`` update over the batch, plus the ``[B, n, n]`` distance matrix.

Prompt-agnostic: the query is ignored.

Example:
    >>> tokens = torch.tensor([[[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]]])
    >>> divprune_order(tokens)[0].tolist()  # 3 is farthest from its nearest; then 0, 2
    [3, 0, 2, 1]
"""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.strategies.base import (
    MaskStrategy,
    TokenScorer,
    check_tokens_and_query,
)
from vissparse.strategies.context import PruningContext, Selection
from vissparse.strategies.greedy import plan_greedy, ranks_from_order
from vissparse.strategies.registry import register_scorer


def cosine_distances(image_tokens: Tensor, eps: float = 1e-8) -> Tensor:
    """``[B, N, N]`` pairwise cosine distances ``1 - cos`` in float32 (zero vectors: 1).

    Exactly symmetric (a matrix product need not be, in its last bits), so that two
    mutual nearest neighbours tie exactly and the tie goes to the lower index in a batch
    and alone alike.
    """
    x = image_tokens.float()
    unit = x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    dist = 1.0 - unit @ unit.transpose(1, 2)
    return (dist + dist.transpose(1, 2)) / 2


def divprune_order(
    image_tokens: Tensor, valid: Tensor | None = None, steps: int | None = None
) -> Tensor:
    """``[B, N]`` long: each row's valid tokens in DivPrune's greedy order, then the rest.

    Position ``p`` of row ``b`` holds the index of the ``p``-th token picked; invalid
    tokens follow the valid ones in index order. With ``steps`` only the first ``steps``
    positions are filled (the greedy loop stops there); the rest hold ``-1``.
    """
    b, n = image_tokens.shape[:2]
    order = torch.empty(b, n, dtype=torch.long, device=image_tokens.device)
    if n == 0:
        return order
    if valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=image_tokens.device)
    dist = cosine_distances(image_tokens)
    rows = torch.arange(b, device=image_tokens.device)
    eye = torch.eye(n, dtype=torch.bool, device=dist.device)
    # step 1: each valid token's distance to its nearest other valid token (0 if alone)
    others = dist.masked_fill(~valid[:, :, None] | eye, float("inf"))
    score = others.min(dim=1).values
    score = torch.where(torch.isinf(score), torch.zeros_like(score), score)
    taken = torch.zeros(b, n, dtype=torch.bool, device=dist.device)
    if steps is not None:
        order.fill_(-1)
    for p in range(n if steps is None else min(steps, n)):
        # taken tokens never again; invalid ones only after every valid one, by index
        key = torch.where(valid, score, torch.full_like(score, _AFTER_VALID))
        pick = key.masked_fill(taken, float("-inf")).argmax(dim=1)
        order[:, p] = pick
        taken[rows, pick] = True
        from_pick = dist[rows, pick]  # [B, N]: every token's distance to the pick
        score = from_pick if p == 0 else torch.minimum(score, from_pick)
    return order


_AFTER_VALID = -1e30  # below any cosine distance (they lie in [0, 2])


@register_scorer
class DivPruneScorer(TokenScorer):
    """DivPrune's greedy max-min diversity order as scores (name ``"divprune"``).

    See the module docstring for the method, its citation and the deviations.

    Example:
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]]])
        >>> DivPruneScorer().score(tokens, torch.zeros(1, 2))
        tensor([[0.7500, 0.2500, 0.5000, 1.0000]])
    """

    name = "divprune"
    exact_budget = True  # top-k over its scores or picks

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """Under top-k (no newline tokens), stop the greedy loop at the largest ``k``.

        The first ``k`` picks get the scores they get from the whole order and the rest
        score 0, so top-k keeps the same tokens after ``k`` greedy steps instead of ``n``
        (``k`` of the padded width, which bounds every row's). Sync-free: the greedy loop
        only launches kernels, ``k`` steps of them from Python (that host cost is in the
        benchmark's overhead).

        Example:
            >>> from vissparse.strategies import TopKStrategy
            >>> tokens = torch.tensor([[[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]]])
            >>> ctx = PruningContext(tokens, torch.zeros(1, 2))
            >>> DivPruneScorer().plan(ctx, 0.5, TopKStrategy()).keep.tolist()
            [[True, False, False, True]]
        """
        check_tokens_and_query(ctx.image_tokens, ctx.query, ctx.valid)
        return plan_greedy(self, ctx, keep_ratio, strategy,
                           lambda k: divprune_order(ctx.image_tokens, ctx.valid, steps=k),
                           newlines=False)  # fmt: skip

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """``(n - p) / n`` for the ``p``-th token picked; top-k is DivPrune's k-set."""
        check_tokens_and_query(image_tokens, query, valid)
        return ranks_from_order(divprune_order(image_tokens, valid), image_tokens.shape[1])
