"""PruMerge+: [CLS]-attention outliers plus spatially uniform tokens, the rest merged in.

Shang et al., "LLaVA-PruMerge: Adaptive Token Reduction for Efficient Large Multimodal
Models" (2024, arXiv:2403.15388), the "+" variant; released code: ``42Shawn/LLaVA-PruMerge``,
``CLIPVisionTower.token_prune_merge_advanced_plus``. The method, per image:

- the tokens whose [CLS] attention is an outlier by the interquartile rule
  (``> Q3 + 1.5 * IQR``) are kept;
- PruMerge+ adds tokens sampled uniformly over the patch grid;
- the merge, ``merge="released"`` (default), as the released code does it: each kept
  token ``i`` becomes ``x_i + sum_j a_j x_j`` over its 32 nearest tokens by key cosine
  (other kept tokens included), ``a`` the [CLS] attention, not normalised (the centre at
  weight 1); and one more token is appended, ``sum_j a_j x_j`` over every token not kept;
- ``merge="partition"``, VisSparse's earlier merge: each token not kept joins the one
  kept token with the most similar key, and a kept token becomes the [CLS]-attention
  weighted *mean* of its group (itself included); no token is appended.

Deviations from the original:

- the budget is fixed (``k`` tokens, as every method here): outliers beyond the budget
  are cut to the highest attention, and the uniform tokens fill the rest, in the
  coarse-to-fine grid order of ``"uniform"`` (the original's count is adaptive, and its
  uniform tokens are every ``int(1 / ratio) // 3``-th patch, ``ratio`` the outlier
  share); the outlier sets are the same;
- the appended token counts against the budget, so ``merge="released"`` keeps ``k - 1``
  outlier and uniform tokens, and the appended token takes the place (and position id)
  of the last token not kept: the original appends it after the image's tokens, where
  the last token sits; with ``k`` tokens or more than the image has, nothing is merged;
- merging happens on the post-projector tokens, with the original position ids (the
  original merges the encoder's features, then projects them);
- the signals: the original computes its attention and keys from the ``q_proj`` and
  ``k_proj`` outputs of the tower's last layer (index 23), as one head over all
  channels; VisSparse reads the head-averaged [CLS] attention and keys of
  ``vision_layer`` (the layer feeding the projector by default);
- on Qwen (no [CLS]) the attention received stands in, as for ``"visionzip"``; on
  LLaVA-NeXT no newline token is kept.

Why the released merge is the default: it is what the published numbers ran, and the
appended token carries every pruned token's content (weighted by attention) that a
partition would spread over the kept ones. The partition stays an option: its kept
tokens stay in scale (a weighted mean), where the released sum grows with the
attention mass of a token's neighbours; on the project's testbed checkpoints it kept
more answers at keep 0.1 (``vissparse testbed eval``), so compare both on your model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.strategies.base import BudgetedMethod, MaskStrategy
from vissparse.strategies.baselines import layout_scores
from vissparse.strategies.context import ImageLayout, PruningContext, Selection, check_vision_layer
from vissparse.strategies.registry import register_scorer

EPS = 1e-8
NEIGHBOURS = 32  # the released code's neighbour count (``topk(..., k=int(32))``)
MERGES = ("released", "partition")


def iqr_outliers(attention: Tensor) -> Tensor:
    """``[n]`` bool: values above ``Q3 + 1.5 * IQR`` (quartiles by linear interpolation).

    Example:
        >>> iqr_outliers(torch.tensor([1.0, 2.0, 2.0, 3.0, 2.0, 30.0])).tolist()
        [False, False, False, False, False, True]
    """
    if attention.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    q1, q3 = torch.quantile(attention.float(), torch.tensor([0.25, 0.75]))
    return attention.float() > q3 + 1.5 * (q3 - q1)


def prumerge_keep(attention: Tensor, spatial: Tensor, k: int) -> Tensor:
    """``[n]`` bool: the IQR outliers (cut to the ``k`` best-attended), then the uniform fill.

    ``spatial`` ranks the tokens for the uniform fill (higher first).

    Example:
        >>> att = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 3.0])
        >>> spatial = torch.tensor([1.0, 0.5, 0.6, 0.4, 0.3, 0.2, 0.7, 0.1])
        >>> prumerge_keep(att, spatial, 2).nonzero().flatten().tolist()  # outlier 7, then 0
        [0, 7]
    """
    n = attention.shape[0]
    att = attention.float().cpu()
    chosen = torch.zeros(n, dtype=torch.bool)
    k = min(k, n)
    if k <= 0:
        return chosen
    outliers = iqr_outliers(att).nonzero().flatten()
    ranked = outliers[torch.sort(att[outliers], descending=True, stable=True).indices][:k]
    chosen[ranked] = True
    fill = torch.sort(spatial.float().cpu().masked_fill(chosen, -torch.inf), descending=True,
                      stable=True).indices[: k - ranked.numel()]  # fmt: skip
    chosen[fill] = True
    return chosen


def prumerge_row(attention: Tensor, keys: Tensor, spatial: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``merge_into`` and ``merge_weight`` ``[n]`` for one image at budget ``k`` (partition).

    Each token not kept joins the kept token with the most similar key, weighted by its
    attention; ``spatial`` ranks the tokens for the uniform fill (higher first).

    Example:
        >>> att = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 3.0])
        >>> keys = torch.eye(2)[[0, 1, 0, 1, 0, 1, 0, 1]]
        >>> spatial = torch.tensor([1.0, 0.5, 0.6, 0.4, 0.3, 0.2, 0.7, 0.1])
        >>> into, w = prumerge_row(att, keys, spatial, 2)
        >>> into.tolist()  # 7 is the outlier; 0 the first uniform token
        [0, 7, 0, 7, 0, 7, 0, 7]
    """
    n = attention.shape[0]
    into = torch.full((n,), -1, dtype=torch.long)
    if min(k, n) <= 0:
        return into, torch.ones(n)
    att = attention.float().cpu()
    kept = prumerge_keep(att, spatial, k).nonzero().flatten()
    unit = keys.float().cpu() / keys.float().cpu().norm(dim=-1, keepdim=True).clamp_min(EPS)
    nearest = (unit @ unit[kept].T).argmax(dim=1)
    into = kept[nearest]
    into[kept] = kept
    return into, att.clamp_min(EPS)


def released_merge(attention: Tensor, keys: Tensor, chosen: Tensor, neighbours: int) -> Tensor:
    """``[m + 1, n]`` mix of the released merge, ``m`` the ``chosen`` ``[n]`` bool tokens.

    Row ``r < m`` is the ``r``-th chosen token (by index): ``x_i + sum_j a_j x_j`` over
    its ``neighbours`` most key-similar other tokens, chosen ones included (ties to the
    lower index); the last row
    is the appended token, ``sum_j a_j x_j`` over the tokens not chosen (``a``: the
    attention, not normalised).

    Example:
        >>> mix = released_merge(torch.tensor([0.5, 0.25, 0.25]), torch.eye(2)[[0, 0, 1]],
        ...                      torch.tensor([True, False, False]), neighbours=1)
        >>> mix.tolist()  # 0 takes its nearest key, 1; the appended token: 1 and 2
        [[1.0, 0.25, 0.0], [0.0, 0.25, 0.25]]
    """
    n = attention.shape[0]
    att = attention.float().cpu()
    kept, pruned = chosen.nonzero().flatten(), (~chosen).nonzero().flatten()
    unit = keys.float().cpu() / keys.float().cpu().norm(dim=-1, keepdim=True).clamp_min(EPS)
    sim = unit[kept] @ unit.T
    sim[torch.arange(kept.numel()), kept] = -torch.inf  # a token is not its own neighbour
    near = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, : min(neighbours, n - 1)]
    mix = torch.zeros(kept.numel() + 1, n)
    mix[:-1].scatter_(1, near, att[near])
    mix[torch.arange(kept.numel()), kept] += 1.0
    mix[-1, pruned] = att[pruned]
    return mix


def released_merge_row(
    attention: Tensor, keys: Tensor, spatial: Tensor, k: int, neighbours: int = NEIGHBOURS
) -> tuple[Tensor, Tensor]:
    """The released merge at budget ``k``: ``(rows [k], mix [k, n])``, values ``mix @ x``.

    ``k - 1`` tokens are kept (:func:`prumerge_keep`) and merged by
    :func:`released_merge`; the appended token takes the place of the last token not
    kept. With ``k >= n`` nothing is pruned and nothing merged (``mix`` is the identity).

    Example:
        >>> att = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 4.0])
        >>> keys = torch.eye(2)[[0, 1, 0, 1, 0, 1, 0, 1]]
        >>> spatial = torch.tensor([1.0, 0.5, 0.6, 0.4, 0.3, 0.2, 0.7, 0.1])
        >>> rows, mix = released_merge_row(att, keys, spatial, 2, neighbours=3)
        >>> rows.tolist()  # the outlier 7, and 6 (the last pruned) for the appended token
        [7, 6]
        >>> mix.tolist()  # 7 plus its 3 key-neighbours 1 3 5; the appended: all of 0..6
        [[0.0, 0.5, 0.0, 0.5, 0.0, 0.5, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0]]
    """
    n = attention.shape[0]
    k = min(k, n)
    if k <= 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, n)
    if k >= n:
        return torch.arange(n), torch.eye(n)
    chosen = prumerge_keep(attention, spatial, k - 1)
    slot = (~chosen).nonzero().flatten()[-1:]
    return torch.cat([chosen.nonzero().flatten(), slot]), released_merge(
        attention, keys, chosen, neighbours
    )


@register_scorer
class PruMergePlusScorer(BudgetedMethod):
    """PruMerge+, attention outliers plus uniform tokens, merged (name ``"prumerge+"``).

    Not sync-free: the IQR outliers are counted per row on the host, after
    :meth:`row_budgets` reads each row's valid tokens and budget back.

    Reads ``"vision_attention"``, ``"vision_keys"`` (layer ``vision_layer``; ``None``:
    the layer feeding the projector) and ``"layouts"``. Merges, so it ignores
    ``strategy``. ``merge``: ``"released"`` (default, the released code's merge with its
    appended token, ``neighbours`` nearest keys per kept token) or ``"partition"``. See
    the module docstring for the paper and every deviation from it.

    Example:
        >>> from vissparse.strategies import TopKStrategy
        >>> att = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 5.0]])
        >>> ctx = PruningContext(torch.randn(1, 9, 4), torch.ones(1, 4),
        ...                      vision_attention=att, vision_keys=torch.randn(1, 9, 3),
        ...                      layouts=[ImageLayout.grid(3, 3)])
        >>> sel = PruMergePlusScorer().plan(ctx, 2 / 9, TopKStrategy())
        >>> sel.keep.nonzero()[:, 1].tolist()  # the outlier 8; 7 carries the appended token
        [7, 8]
        >>> sel = PruMergePlusScorer(merge="partition").plan(ctx, 2 / 9, TopKStrategy())
        >>> sel.keep.nonzero()[:, 1].tolist()  # the outlier 8 and the grid's first token
        [0, 8]
    """

    name = "prumerge+"
    requires = frozenset({"vision_attention", "vision_keys", "layouts"})

    def __init__(
        self, vision_layer: int | None = None, merge: str = "released",
        neighbours: int = NEIGHBOURS,
    ) -> None:  # fmt: skip
        if merge not in MERGES:
            raise ValueError(f"`merge` must be one of {MERGES}, got {merge!r}")
        if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1:
            raise ValueError(f"`neighbours` must be a positive int, got {neighbours!r}")
        self.vision_layer = check_vision_layer(vision_layer)
        self.merge = merge
        self.neighbours = neighbours

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """Outliers and uniform tokens per image, each absorbing its most similar tokens."""
        attention = ctx.need("vision_attention", self)
        keys = ctx.need("vision_keys", self)
        layouts = ctx.need("layouts", self)
        assert isinstance(attention, Tensor) and isinstance(keys, Tensor)
        assert isinstance(layouts, (list, tuple))
        n = ctx.image_tokens.shape[1]

        if self.merge == "partition":

            def row_fn(row: int, index: Tensor, k: int) -> tuple[Tensor, Tensor]:
                spatial = layout_scores(layouts[row], n)[index]
                return prumerge_row(attention[row, index], keys[row, index], spatial, k)

            return self.merge_rows(ctx, keep_ratio, row_fn)
        tokens = ctx.image_tokens
        keep = torch.zeros(tokens.shape[:2], dtype=torch.bool)
        values = torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device)
        for row, index, k in self.row_budgets(ctx, keep_ratio):
            layout: ImageLayout = layouts[row]
            spatial = layout_scores(layout, n)[index]
            rows, mix = released_merge_row(attention[row, index], keys[row, index], spatial, k,
                                           self.neighbours)  # fmt: skip
            x = tokens[row, index.to(tokens.device)].float()
            values[row, index[rows].to(tokens.device)] = mix.to(tokens.device) @ x
            keep[row, index[rows]] = True
        into = torch.where(keep, torch.arange(n), -1)
        return Selection(keep.to(tokens.device), into.to(tokens.device), merged_values=values)

    def __repr__(self) -> str:
        return (
            f"PruMergePlusScorer(vision_layer={self.vision_layer}, merge={self.merge!r}, "
            f"neighbours={self.neighbours})"
        )
