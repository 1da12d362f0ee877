"""PruMerge+: [CLS]-attention outliers plus spatially uniform tokens, the rest merged in.

Shang et al., "LLaVA-PruMerge: Adaptive Token Reduction for Efficient Large Multimodal
Models" (2024, arXiv:2403.15388), the "+" variant. The method, per image:

- the tokens whose [CLS] attention is an outlier by the interquartile rule
  (``> Q3 + 1.5 * IQR``) are kept;
- PruMerge+ adds tokens sampled uniformly over the patch grid;
- each kept token absorbs its most similar tokens (cosine of the vision encoder's keys),
  as an average weighted by their [CLS] attention.

Deviations from the original:

- the budget is fixed (``k`` tokens, as every method here): outliers beyond ``k`` are cut
  to the ``k`` with the highest attention, and the uniform tokens fill the rest, in the
  coarse-to-fine grid order of ``"uniform"`` (the original's count is adaptive);
- merging is a partition: each pruned token joins the one kept token whose key is most
  similar (the original lets a token be averaged into several kept tokens' neighbour
  sets); the weights are the [CLS] attention, as in the original;
- merging happens on the post-projector tokens, with the original position ids;
- on Qwen (no [CLS]) the attention received stands in, as for ``"visionzip"``; on
  LLaVA-NeXT no newline token is kept.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.strategies.base import BudgetedMethod, MaskStrategy
from vissparse.strategies.baselines import layout_scores
from vissparse.strategies.context import ImageLayout, PruningContext, Selection, check_vision_layer
from vissparse.strategies.registry import register_scorer

EPS = 1e-8


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


def prumerge_row(attention: Tensor, keys: Tensor, spatial: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``merge_into`` and ``merge_weight`` ``[n]`` for one image at budget ``k``.

    ``spatial`` ranks the tokens for the uniform fill (higher first).

    Example:
        >>> att = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 3.0])
        >>> keys = torch.eye(2)[[0, 1, 0, 1, 0, 1, 0, 1]]
        >>> spatial = torch.tensor([1.0, 0.5, 0.6, 0.4, 0.3, 0.2, 0.7, 0.1])
        >>> into, w = prumerge_row(att, keys, spatial, 2)
        >>> into.tolist()  # 7 is the outlier; 0 the first uniform token
        [0, 7, 0, 7, 0, 7, 0, 7]
    """
    n = attention.shape[0]
    k = min(k, n)
    into = torch.full((n,), -1, dtype=torch.long)
    if k <= 0:
        return into, torch.ones(n)
    att = attention.float().cpu()
    outliers = iqr_outliers(att).nonzero().flatten()
    ranked = outliers[torch.sort(att[outliers], descending=True, stable=True).indices][:k]
    chosen = torch.zeros(n, dtype=torch.bool)
    chosen[ranked] = True
    fill = torch.sort(spatial.float().cpu().masked_fill(chosen, -torch.inf), descending=True,
                      stable=True).indices[: k - ranked.numel()]  # fmt: skip
    chosen[fill] = True
    kept = chosen.nonzero().flatten()
    unit = keys.float().cpu() / keys.float().cpu().norm(dim=-1, keepdim=True).clamp_min(EPS)
    nearest = (unit @ unit[kept].T).argmax(dim=1)
    into = kept[nearest]
    into[kept] = kept
    return into, att.clamp_min(EPS)


@register_scorer
class PruMergePlusScorer(BudgetedMethod):
    """PruMerge+, attention outliers plus uniform tokens, merged (name ``"prumerge+"``).

    Not sync-free: the IQR outliers are counted per row on the host, after
    :meth:`row_budgets` reads each row's valid tokens and budget back.

    Reads ``"vision_attention"``, ``"vision_keys"`` (layer ``vision_layer``; ``None``:
    the layer feeding the projector) and ``"layouts"``. Merges, so it ignores
    ``strategy``. See the module docstring for the paper and every deviation from it.

    Example:
        >>> from vissparse.strategies import TopKStrategy
        >>> att = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 5.0]])
        >>> ctx = PruningContext(torch.randn(1, 9, 4), torch.ones(1, 4),
        ...                      vision_attention=att, vision_keys=torch.randn(1, 9, 3),
        ...                      layouts=[ImageLayout.grid(3, 3)])
        >>> sel = PruMergePlusScorer().plan(ctx, 2 / 9, TopKStrategy())
        >>> sel.keep.nonzero()[:, 1].tolist()  # the outlier 8 and the grid's first token
        [0, 8]
    """

    name = "prumerge+"
    requires = frozenset({"vision_attention", "vision_keys", "layouts"})

    def __init__(self, vision_layer: int | None = None) -> None:
        self.vision_layer = check_vision_layer(vision_layer)

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """Outliers and uniform tokens per image, each absorbing its most similar tokens."""
        attention = ctx.need("vision_attention", self)
        keys = ctx.need("vision_keys", self)
        layouts = ctx.need("layouts", self)
        assert isinstance(attention, Tensor) and isinstance(keys, Tensor)
        assert isinstance(layouts, (list, tuple))
        n = ctx.image_tokens.shape[1]

        def row_fn(row: int, index: Tensor, k: int) -> tuple[Tensor, Tensor]:
            layout: ImageLayout = layouts[row]
            spatial = layout_scores(layout, n)[index]
            return prumerge_row(attention[row, index], keys[row, index], spatial, k)

        return self.merge_rows(ctx, keep_ratio, row_fn)

    def __repr__(self) -> str:
        return f"PruMergePlusScorer(vision_layer={self.vision_layer})"
