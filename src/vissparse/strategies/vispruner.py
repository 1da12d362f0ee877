"""VisPruner: the most attended tokens, then a diverse set of the rest by removing duplicates.

Zhang et al., "Beyond Text-Visual Attention: Exploiting Visual Cues for Effective Token
Pruning in VLMs", ICCV 2025 (arXiv:2412.01818); code: ``Theia-4869/VisPruner``,
``llava/model/llava_arch.py`` (``encode_images``) and ``clip_encoder.py``
(``feature_select``). Per image, at a budget of ``T`` tokens:

- ``T_imp = int(T * important_ratio)`` important tokens: the highest [CLS] attention
  (averaged over heads) at the vision layer feeding the projector (-2 in LLaVA-1.5);
- the other tokens, in descending attention order, are de-duplicated in rounds until
  ``T_div = T - T_imp`` remain: split the current list alternately into ``A`` (even
  positions) and ``B`` (odd positions); each ``A`` token's score is its largest cosine
  similarity to a ``B`` token (the vision features before the projector); drop the
  ``r = min(8, R - T_div)`` highest-scoring ``A`` tokens (``R`` the list's length); the
  new list is the kept ``A`` tokens by descending score, then all of ``B``.

The kept set depends on ``T``, so this is a selection for a keep ratio (``plan``), not a
scorer: its picks (important by attention, then the diverse ones in their final order)
are ranked first and top-k keeps them.

Deviations from the released code:

- the attention is VisSparse's ``vision_attention`` (the head average, as the code); on
  towers without [CLS] (Qwen) the attention each token receives, pooled over its merge
  unit, stands in, and the features are the merge unit's mean;
- ties (equal attention, equal scores) go to the lower index / earlier position (stable
  sorts); the code's ``argsort`` is not stable;
- when ``R`` is odd, ``A`` has one token more than ``B``; the code's gather of the kept
  ``A`` tokens then raises (its index ``expand(-1, R // 2 - r)`` is one column short) or,
  where ``R // 2 == r``, keeps none of them (one token under budget); here all
  ``ceil(R / 2) - r`` are kept. At keep 0.1 of 576 tokens ``R = 547`` is odd;
- ``T = ceil(keep_ratio * n)`` per image (the code takes ``T`` as given), on a batch with
  padding; the similarities come from one ``[N, N]`` matrix per image (the code
  multiplies the ``A`` and ``B`` subsets each round: equal up to the last bit);
- LLaVA-NeXT's newline tokens count against the budget and are kept with their row.

Prompt-agnostic: the query is ignored. Sync-free: the per-row counts stay on the device
and the number of rounds, about ``(N - T) / 8``, is bounded from the padded width ``N``
(rows that finish early run no-op rounds).

Example:
    >>> feats = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.99, 0.1, 0.0],
    ...                        [0.0, 1.0, 0.0], [0.1, 0.99, 0.0], [-1.0, -1.0, 0.0]]])
    >>> att = torch.tensor([[0.5, 0.2, 0.1, 0.09, 0.08, 0.03]])
    >>> ranks = vispruner_ranks(feats, att, torch.tensor([4]), important_ratio=0.25)
    >>> ranks[0].nonzero().flatten().tolist()  # 0 by attention; A = 1 3 5, B = 2 4
    [0, 2, 4, 5]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vissparse.strategies.base import BudgetedMethod, MaskStrategy, check_tokens_and_query
from vissparse.strategies.context import PruningContext, Selection, check_vision_layer
from vissparse.strategies.registry import register_scorer
from vissparse.strategies.scope import unit_similarity

STEP = 8  # tokens dropped per round, as in the released code


def round_bound(n: int, t: int) -> int:
    """Rounds enough for any row of at most ``n`` tokens whose budget leaves ``n - t``.

    A round drops ``min(8, R - T_div, ceil(R / 2))`` tokens (``[r:]`` of the ``A`` half
    drops at most all of it): at most ``(n - t) // 8`` full rounds, one last short one,
    and, once ``R <= 14`` halves it instead, at most 4 more (14, 7, 3, 1).

    Example:
        >>> round_bound(576, 58), round_bound(8, 4)
        (69, 5)
    """
    return math.ceil(max(n - t, 0) / STEP) + 4


def _descending(key: Tensor, valid: Tensor) -> Tensor:
    """``[B, N]`` indices by descending ``key`` (ties: lower index), invalid ones last."""
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    regroup = torch.sort(valid.gather(1, order).to(torch.int8), dim=1, descending=True,
                         stable=True).indices  # fmt: skip
    return order.gather(1, regroup)


def vispruner_ranks(
    features: Tensor, attention: Tensor, budgets: Tensor, valid: Tensor | None = None,
    important_ratio: float = 0.5, max_budget: int | None = None,
) -> Tensor:  # fmt: skip
    """``[B, N]`` float32: VisPruner's picks at budgets ``[B]`` ranked first, the rest 0.

    The important tokens rank first (by attention), then the diverse ones in their final
    order; each row keeps ``min(budgets[b], n_valid)`` picks. ``max_budget`` is a host
    bound known from the shapes, ``kept_count(keep_ratio, N)`` for the padded width
    ``N``: every row's ``budgets[b] <= max_budget`` and ``n_valid - budgets[b] <= N -
    max_budget``; it bounds the rounds and the list's width (``None``: ``N``, no bound).

    Example:
        >>> feats = torch.tensor([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.6, 0.8]]])
        >>> att = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
        >>> vispruner_ranks(feats, att, torch.tensor([2])).tolist()  # 0; A = 1 3 drop, B = 2
        [[1.0, 0.0, 0.75, 0.0]]
    """
    b, n = features.shape[:2]
    device = features.device
    if valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=device)
    scores = torch.zeros(b, n, dtype=torch.float32, device=device)
    if n == 0 or b == 0:
        return scores
    n_valid = valid.sum(dim=1)
    total = torch.minimum(budgets.to(device), n_valid)  # T, never more than the valid tokens
    important = torch.floor(budgets.to(device, torch.float64) * important_ratio).long()
    important = torch.minimum(important, n_valid)  # T_imp
    diverse = total - important  # T_div after the clamp: the diverse tokens kept
    order = _descending(attention.float().to(device), valid)
    pos = torch.arange(n, device=device)
    # the residual list: order[T_imp:], its first R entries valid (then filler index 0)
    length = n_valid - important  # R
    res = order.gather(1, (important[:, None] + pos).clamp(max=n - 1))
    res = torch.where(pos < length[:, None], res, torch.zeros_like(res))
    sim = unit_similarity(features.to(device))
    rows = torch.arange(b, device=device)[:, None, None]
    bound = n if max_budget is None else max_budget
    for i in range(round_bound(n, 0 if max_budget is None else max_budget)):
        # no row's list is longer: 8 gone per round until the last round (-> T_div) or
        # R <= 14 (halving); rows with T_div = 0 pick none of it
        w = min(n, max(n - STEP * i, bound, 14))
        res = res[:, :w]
        r = torch.clamp(torch.minimum(length - diverse, torch.full_like(length, STEP)), min=0)
        r = torch.where(diverse > 0, r, torch.zeros_like(r))  # the code's `while T_div > 0`
        n_a, n_b = (length + 1) // 2, length // 2
        r = torch.minimum(r, n_a)  # the code's `[r:]` drops at most all of A
        a_idx, b_idx = res[:, 0::2], res[:, 1::2]
        wa, wb = a_idx.shape[1], b_idx.shape[1]
        if wb == 0:
            break  # one token left in every row: nothing to compare
        pair = sim[rows, a_idx[:, :, None], b_idx[:, None, :]]  # [B, |A|, |B|]
        b_ok = torch.arange(wb, device=device) < n_b[:, None]
        best = pair.masked_fill(~b_ok[:, None, :], float("-inf")).amax(dim=2)
        a_ok = torch.arange(wa, device=device) < n_a[:, None]
        best = best.masked_fill(~a_ok, float("-inf"))
        by_score = torch.sort(best, dim=1, descending=True, stable=True).indices
        kept_a = n_a - r
        # new list: A's survivors (sorted positions r, r+1, ...), then B's n_b tokens
        at = pos[:w]
        from_a = a_idx.gather(1, by_score.gather(1, (r[:, None] + at[:wa]).clamp(max=wa - 1)))
        from_b = b_idx.gather(1, (at - kept_a[:, None]).clamp(0, wb - 1))
        new = torch.where(at < kept_a[:, None], _widen(from_a, w), from_b)
        new = torch.where(at < (length - r)[:, None], new, torch.zeros_like(new))
        res = torch.where((r > 0)[:, None], new, res)
        length = length - r
    # ranks: important first, then the residual list's first min(R, T_div) entries
    rank_imp = torch.where(pos < important[:, None], pos, n)
    kept_res = torch.minimum(length, diverse)
    at = pos[: res.shape[1]]
    rank_res = torch.where(at < kept_res[:, None], important[:, None] + at, n)
    ranks = torch.full((b, n), n, dtype=torch.long, device=device)
    ranks.scatter_reduce_(1, order, rank_imp, "amin")
    ranks.scatter_reduce_(1, res, rank_res, "amin")
    return torch.where(ranks < n, (n - ranks).float() / n, scores)


def _widen(x: Tensor, n: int) -> Tensor:
    """``x`` ``[B, w]`` padded with zeros on the right to ``[B, n]``."""
    return torch.nn.functional.pad(x, (0, n - x.shape[1]))


@register_scorer
class VisPrunerScorer(BudgetedMethod):
    """VisPruner, important plus diverse tokens (name ``"vispruner"``).

    Reads the ``"vision_attention"`` and ``"vision_features"`` signals of vision layer
    ``vision_layer``; ``None`` (default) is the layer whose output feeds the projector
    (-2 in LLaVA-1.5, as in the released code). ``important_ratio`` is the share of the
    budget taken by attention (0.5, the released default). See the module docstring for
    the paper and every deviation from its code. Sync-free.

    Example:
        >>> from vissparse.strategies import TopKStrategy
        >>> feats = torch.tensor([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.6, 0.8]]])
        >>> ctx = PruningContext(torch.zeros(1, 4, 3), torch.zeros(1, 3),
        ...                      vision_features=feats,
        ...                      vision_attention=torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
        >>> VisPrunerScorer().plan(ctx, 0.5, TopKStrategy()).keep.tolist()
        [[True, False, True, False]]
    """

    name = "vispruner"
    exact_budget = True  # top-k over its picks
    requires = frozenset({"vision_attention", "vision_features"})

    def __init__(self, important_ratio: float = 0.5, vision_layer: int | None = None) -> None:
        if (
            isinstance(important_ratio, bool)
            or not isinstance(important_ratio, (int, float))
            or not 0 <= important_ratio <= 1
        ):
            raise ValueError(f"`important_ratio` must be in [0, 1], got {important_ratio!r}")
        self.important_ratio = float(important_ratio)
        self.vision_layer = check_vision_layer(vision_layer)

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """The picks at each row's budget, ranked first, through ``strategy``."""
        from vissparse.keep_ratio import validate_keep_ratio
        from vissparse.strategies.base import select_by_scores
        from vissparse.strategies.topk import kept_count, kept_counts

        check_tokens_and_query(ctx.image_tokens, ctx.query, ctx.valid)
        keep_ratio = validate_keep_ratio(keep_ratio)
        attention = ctx.need("vision_attention", self)
        features = ctx.need("vision_features", self)
        assert isinstance(attention, Tensor) and isinstance(features, Tensor)
        n = ctx.image_tokens.shape[1]
        budgets = kept_counts(keep_ratio, ctx.budget_mask().sum(dim=1))
        # n - kept_count(n) grows with n, so it bounds every row's n_valid - T: the
        # rounds are known from the padded width (no read of the counts)
        bound = kept_count(keep_ratio, n)
        valid = ctx.valid
        if valid is None:
            valid = torch.ones(ctx.image_tokens.shape[:2], dtype=torch.bool,
                               device=ctx.image_tokens.device)  # fmt: skip
        scores = vispruner_ranks(features.to(valid.device), attention, budgets, valid,
                                 self.important_ratio, bound)  # fmt: skip
        return select_by_scores(ctx, scores, keep_ratio, strategy, self)

    def __repr__(self) -> str:
        return (
            f"VisPrunerScorer(important_ratio={self.important_ratio:.4g}, "
            f"vision_layer={self.vision_layer})"
        )
