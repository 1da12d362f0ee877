"""DART: keep the tokens least duplicated by a few pivot tokens (before-LLM variant).

Wen et al., "Stop Looking for Important Tokens in Multimodal Language Models:
Duplication Matters More" (2025, arXiv:2502.11494). The paper's method, at layer ``K``
of the language model: take as pivots the ``p`` image tokens and ``p`` text tokens with
the largest L1 norm of their keys; then, pivot by pivot, add the ``k / (2p)`` image
tokens least cosine-similar to that pivot (among those not yet chosen); keep the image
pivots and everything added.

This file is the before-LLM variant the method-zoo issue asks for, with these deviations:

- features: the post-projector image tokens and the prompt's input embeddings stand in
  for layer ``K``'s keys (pivots) and hidden states (similarity);
- the budget is exact: ``k`` tokens in all, image pivots included, the remainder spread
  over the pivots one by one (the original keeps ``p + 2p * floor(k / 2p)`` tokens);
- the pivots are visited in a fixed order (image pivots by descending norm, then text
  pivots), where the original iterates over a Python set;
- with no prompt embeddings in the context, only image pivots are used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.strategies.base import BudgetedMethod, MaskStrategy
from vissparse.strategies.context import PruningContext, Selection
from vissparse.strategies.registry import register_scorer

EPS = 1e-8


def dart_picks(tokens: Tensor, words: Tensor | None, k: int, pivots: int = 4) -> list[int]:
    """DART's ``k`` chosen token indices for one image, in the order they are chosen.

    ``tokens`` is ``[n, D]`` (valid tokens only), ``words`` ``[t, D]`` the prompt's word
    embeddings or ``None``. The first picks are the image pivots.

    Example:
        >>> x = torch.tensor([[3.0, 0.0], [2.5, 0.1], [0.0, 1.0], [0.1, -1.0]])
        >>> dart_picks(x, None, 3, pivots=1)  # pivot 0, then the two least like it
        [0, 2, 3]
    """
    n = tokens.shape[0]
    k = min(k, n)
    if k <= 0:
        return []
    x = tokens.float()
    unit = x / x.norm(dim=-1, keepdim=True).clamp_min(EPS)
    p_img = min(pivots, k)
    image_pivots = torch.sort(x.abs().sum(-1), descending=True, stable=True).indices[:p_img]
    anchors = [unit[int(i)] for i in image_pivots]
    if words is not None and words.shape[0] > 0:
        w = words.float()
        order = torch.sort(w.abs().sum(-1), descending=True, stable=True).indices[:pivots]
        anchors += [w[int(i)] / w[int(i)].norm().clamp_min(EPS) for i in order]
    picks = [int(i) for i in image_pivots]
    taken = torch.zeros(n, dtype=torch.bool)
    taken[image_pivots] = True
    remaining = k - p_img
    for j, anchor in enumerate(anchors):
        quota = remaining // len(anchors) + (1 if j < remaining % len(anchors) else 0)
        if quota == 0:
            continue
        similarity = (unit @ anchor).masked_fill(taken, float("inf"))
        chosen = torch.sort(similarity, stable=True).indices[:quota]
        picks += [int(i) for i in chosen]
        taken[chosen] = True
    return picks


@register_scorer
class DartScorer(BudgetedMethod):
    """DART, duplication-aware selection around pivot tokens (name ``"dart"``).

    Not sync-free: it reads each row's valid tokens and budget back to the host
    (:meth:`row_budgets`) and picks the pivots and quotas row by row there.

    Keeps ``pivots`` image pivots (largest L1 norm) and, for each image and text pivot
    in turn, the tokens least similar to it, exactly ``k`` in all. Reads the
    ``"prompt_embeddings"`` signal for the text pivots. See the module docstring for the
    paper and every deviation from it.

    Example:
        >>> from vissparse.strategies import TopKStrategy
        >>> x = torch.tensor([[[3.0, 0.0], [2.5, 0.1], [0.0, 1.0], [0.1, -1.0]]])
        >>> ctx = PruningContext(x, torch.ones(1, 2))
        >>> DartScorer(pivots=1).plan(ctx, 0.5, TopKStrategy()).keep.tolist()
        [[True, False, True, False]]
    """

    name = "dart"
    exact_budget = True  # top-k over its scores or picks
    requires = frozenset({"prompt_embeddings"})

    def __init__(self, pivots: int = 4) -> None:
        if isinstance(pivots, bool) or not isinstance(pivots, int) or pivots < 1:
            raise ValueError(f"`pivots` must be an int >= 1, got {pivots!r}")
        self.pivots = pivots

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """The picks for each row's budget, ranked in pick order, through ``strategy``."""
        rows = []
        for row, index, k in self.row_budgets(ctx, keep_ratio):
            words = None
            if ctx.prompt_embeddings is not None and ctx.prompt_mask is not None:
                words = ctx.prompt_embeddings[row][ctx.prompt_mask[row]]
            tokens = ctx.image_tokens[row, index.to(ctx.image_tokens.device)]
            picks = dart_picks(tokens, words, k, self.pivots)
            rows.append(index[torch.tensor(picks, dtype=torch.long)])
        return self.select_picks(ctx, rows, keep_ratio, strategy)

    def __repr__(self) -> str:
        return f"DartScorer(pivots={self.pivots})"
