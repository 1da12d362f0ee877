"""SCOPE: greedy coverage of the image, each gain weighted by the token's saliency.

Deng et al., "SCOPE: Saliency-Coverage Oriented Token Pruning for Efficient
Multimodal LLMs", NeurIPS 2025 (arXiv:2510.24214); code: ``kinredon/SCOPE``,
``scope/clip_encoder.py`` (``SCOPE`` and ``CLIPVisionTower_SCOPE.forward``). With ``S``
the cosine similarity of the vision encoder's features (layer -2, before the projector),
``a`` the [CLS] attention of the same layer and ``cur`` how well each token is covered so
far (``cur = 0`` at the start), each step picks

    ``argmax_i  gain_i * a_i ** alpha``,  ``gain_i = sum_j max(0, S[j, i] - cur[j])``

among the tokens not yet picked (ties to the lower index, ``torch.argmax``), then sets
``cur = max(cur, S[i*, :])``. ``alpha = 1`` and the product (``combined="multi"``) are the
released defaults; ``combined="add"`` scores ``gain_i + a_i ** alpha`` instead. Coverage
starts at 0, so a negative cosine never adds gain; a picked token covers itself, so it
adds nothing afterwards.

The greedy order does not depend on how many tokens are kept, so this is a scorer: the
``p``-th token picked scores ``(n - p) / n``, and top-k of those is SCOPE's set of ``k``
tokens for every ``k``; :meth:`ScopeScorer.plan` stops the loop at ``k`` picks.

Deviations from the released code:

- ``a`` is VisSparse's ``vision_attention``, averaged over heads, where the code sums
  over heads: a positive constant factor per image, so under ``"multi"`` the picks are
  the same (bit for bit when the head count is a power of two; otherwise up to the last
  bit of a product). Under ``"add"`` the attention weighs ``1 / heads`` as much as in
  the code;
- on towers without [CLS] (Qwen) ``a`` is the attention each token receives, pooled
  over its merge unit, and the features are the merge unit's mean (the projector's
  input there);
- it runs on a batch with padding: padded tokens are never picked before a valid one
  and never count as tokens to cover; zero feature vectors get cosine 0 (the code
  divides by their zero norm);
- the budget is ``ceil(keep_ratio * n)`` (the code takes ``k`` tokens as given; its
  batched path divides ``k`` by the batch size) and the kept tokens keep their original
  positions (the code re-sorts them, ``restore_image_features_sorted_scope``);
- LLaVA-NeXT's newline tokens count against the budget and are kept with their row;
  every family runs this LLaVA-1.5 function (the released LLaVA-NeXT path calls a
  separate ``FacilityLocation`` routine, not transcribed here);
- pruning happens before the language model, as in the released LLaVA-1.5 code (a
  summary of the paper speaks of pruning at an LLM layer; the code does not).

Cost: the ``[B, N, N]`` similarity matrix and ``k`` steps of ``O(B N^2)`` each.

Prompt-agnostic: the query is ignored. Sync-free: the loop only launches kernels.

Example:
    >>> feats = torch.tensor([[[1.0, 0.0], [0.98, 0.2], [0.0, 1.0], [-1.0, 0.0]]])
    >>> att = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    >>> scope_order(feats, att)[0].tolist()  # 0 covers 1; then 2, then the outlier 3
    [0, 2, 3, 1]
"""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.strategies.base import (
    MaskStrategy,
    TokenScorer,
    check_tokens_and_query,
)
from vissparse.strategies.context import PruningContext, Selection, check_vision_layer
from vissparse.strategies.greedy import plan_greedy, ranks_from_order
from vissparse.strategies.registry import register_scorer

EPS = 1e-8
COMBINED = ("multi", "add")
_AFTER_VALID = -1e30  # below any SCOPE score of a valid token (those are >= -0 or >= a**alpha)


def unit_similarity(features: Tensor, eps: float = EPS) -> Tensor:
    """``[B, N, N]`` float32 cosine similarity of the features (zero vectors: 0).

    Example:
        >>> unit_similarity(torch.tensor([[[2.0, 0.0], [1.0, 1.0]]])).round(decimals=4)
        tensor([[[1.0000, 0.7071],
                 [0.7071, 1.0000]]])
    """
    x = features.float()
    unit = x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    return unit @ unit.transpose(1, 2)


def scope_order(
    features: Tensor, attention: Tensor, valid: Tensor | None = None, steps: int | None = None,
    alpha: float = 1.0, combined: str = "multi",
) -> Tensor:  # fmt: skip
    """``[B, N]`` long: each row's valid tokens in SCOPE's greedy order, then the rest.

    ``features`` ``[B, N, D]``, ``attention`` ``[B, N]`` (saliency, non-negative).
    Position ``p`` of row ``b`` holds the ``p``-th pick; padding follows the valid tokens
    in index order. With ``steps`` only the first ``steps`` positions are filled (the
    loop stops there); the rest hold ``-1``. Each step costs ``O(B N^2)``.

    Example:
        >>> feats = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]])
        >>> scope_order(feats, torch.tensor([[0.2, 0.1, 0.8]]), steps=2)[0].tolist()
        [2, 0, -1]
    """
    b, n = features.shape[:2]
    device = features.device
    order = torch.full((b, n), -1, dtype=torch.long, device=device)
    if n == 0:
        return order
    if valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=device)
    pair = valid[:, :, None] & valid[:, None, :]
    sim = unit_similarity(features).masked_fill(~pair, 0.0)  # padding: nothing to cover
    weight = attention.float().to(device) ** alpha
    rows = torch.arange(b, device=device)
    cur = torch.zeros(b, n, dtype=torch.float32, device=device)
    taken = torch.zeros(b, n, dtype=torch.bool, device=device)
    floor = torch.full_like(cur, _AFTER_VALID)
    for p in range(n if steps is None else min(steps, n)):
        # gain_i = sum_j max(0, S[j, i] - cur[j]) (picked i: masked out below)
        gain = (sim - cur[:, :, None]).clamp_min(0.0).sum(dim=1)
        score = gain * weight if combined == "multi" else gain + weight
        key = torch.where(valid, score, floor).masked_fill(taken, float("-inf"))
        pick = key.argmax(dim=1)
        order[:, p] = pick
        taken[rows, pick] = True
        cur = torch.maximum(cur, sim[rows, pick])
    return order


@register_scorer
class ScopeScorer(TokenScorer):
    """SCOPE, saliency-weighted greedy coverage (name ``"scope"``).

    Reads the ``"vision_features"`` (the projector's input) and ``"vision_attention"``
    signals of vision layer ``vision_layer``; ``None`` (default) is the layer whose output
    feeds the projector (-2 in LLaVA-1.5, as in the released code). ``alpha`` is the
    saliency exponent, ``combined`` ``"multi"`` (gain times saliency, the default) or
    ``"add"``. See the module docstring for the paper and every deviation from its code.
    Sync-free.

    Example:
        >>> from vissparse.strategies import TopKStrategy
        >>> feats = torch.tensor([[[1.0, 0.0], [0.98, 0.2], [0.0, 1.0], [-1.0, 0.0]]])
        >>> ctx = PruningContext(torch.zeros(1, 4, 3), torch.zeros(1, 3),
        ...                      vision_features=feats,
        ...                      vision_attention=torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
        >>> ScopeScorer().plan(ctx, 0.5, TopKStrategy()).keep.tolist()
        [[True, False, True, False]]
    """

    name = "scope"
    exact_budget = True  # top-k over its scores
    requires = frozenset({"vision_attention", "vision_features"})

    def __init__(
        self, alpha: float = 1.0, combined: str = "multi", vision_layer: int | None = None
    ) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
            raise ValueError(f"`alpha` must be a number >= 0, got {alpha!r}")
        if combined not in COMBINED:
            raise ValueError(f"`combined` must be one of {COMBINED}, got {combined!r}")
        self.alpha = float(alpha)
        self.combined = combined
        self.vision_layer = check_vision_layer(vision_layer)

    def _order(self, ctx: PruningContext, steps: int | None) -> Tensor:
        check_tokens_and_query(ctx.image_tokens, ctx.query, ctx.valid)
        attention = ctx.need("vision_attention", self)
        features = ctx.need("vision_features", self)
        assert isinstance(attention, Tensor) and isinstance(features, Tensor)
        features = features.to(ctx.image_tokens.device)
        return scope_order(features, attention, ctx.valid, steps, self.alpha, self.combined)

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Not defined: SCOPE reads the vision encoder's signals; see :meth:`score_context`."""
        raise ValueError(
            f"`scorer` {self.name!r} reads the vision encoder's features and attention: use "
            "it through VisSparse or select_tokens, not score()"
        )

    def score_context(self, ctx: PruningContext) -> Tensor:
        """``(n - p) / n`` for the ``p``-th pick of the whole order (``n`` steps)."""
        n = ctx.image_tokens.shape[1]
        return ranks_from_order(self._order(ctx, None), n)

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """Under top-k, stop the greedy loop at ``k`` of the padded width.

        The first ``k`` picks get their scores from the whole order and the rest score
        0, so top-k keeps the same tokens (a row with a smaller ``k`` keeps its first
        picks all the same; LLaVA-NeXT's newlines take their row's best score).
        """
        return plan_greedy(self, ctx, keep_ratio, strategy, lambda k: self._order(ctx, k))

    def __repr__(self) -> str:
        return (
            f"ScopeScorer(alpha={self.alpha:.4g}, combined={self.combined!r}, "
            f"vision_layer={self.vision_layer})"
        )
