"""VisionZip: dominant tokens by [CLS] attention, the rest merged into contextual tokens.

Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models"
(CVPR 2025). The method, per image, at a budget of ``k`` tokens:

- ``d`` dominant tokens: the highest [CLS] attention (averaged over heads) at the vision
  layer whose output feeds the projector (layer -2 in LLaVA-1.5; 54 of 64 in the
  paper's settings, so ``d = round(k * 54 / 64)``). The released code
  (``dvlab-research/VisionZip``, ``visionzip(model, dominant=54, contextual=10)``)
  counts the [CLS] token among them (``dominant_num = dominant - 1`` patches, plus
  [CLS]), and the LLM sees all ``d + c`` of them, [CLS] included;
- ``c = k - d`` contextual tokens: of the remaining tokens, every ``step``-th (``step =
  remaining // c``) is a target; each other remaining token joins the target whose key
  (averaged over heads, same layer) is most cosine-similar; a contextual token is its
  target plus the mean of the tokens that joined it.

The [CLS] slot (``count_cls=True``, the default). In the families VisSparse supports
the language model never sees [CLS] (LLaVA drops it before the projector, Qwen's and
SigLIP's towers have none), and ``keep_ratio`` counts the image tokens the language
model sees, exactly. So VisSparse keeps the released count of dominant patches
(``d - 1``), spaces the contextual targets over the same remaining tokens as the
released code (``n - d + 1`` of them, so the targets and the groups are the released
ones), and gives the [CLS] slot to the best-attended remaining token that is not a
target, kept as it is. The kept set is then the released code's patches plus that one
token, and a contextual token differs from the released one only when the slot token
would have joined its group (its mean leaves that token out). ``count_cls=False``
counts ``d`` dominant patches instead (what the released code runs with ``dominant =
d + 1``), which shifts the evenly spaced targets by one where a dominant token lies
before them. Towers without [CLS] (Qwen, SigLIP) get the same rule, for one behaviour
whatever the family.

Deviations from the original:

- merging happens on the post-projector tokens, where the original merges the encoder's
  features and then projects them; the projector is not linear, so the values differ;
- the kept and contextual tokens keep their original position ids (the original appends
  them in a new order with fresh positions), so drop mode stays exact;
- on Qwen (no [CLS] token) the attention each token receives, pooled over its 2x2 merge
  unit, stands in for [CLS] attention, and keys are pooled the same way;
- on LLaVA-NeXT the budget counts the newline tokens, and VisionZip keeps none of them
  (they carry no image content), so the kept tokens are all image patches.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.strategies.base import BudgetedMethod, MaskStrategy
from vissparse.strategies.context import PruningContext, Selection, check_vision_layer
from vissparse.strategies.registry import register_scorer

EPS = 1e-8
PAPER_DOMINANT = 54 / 64


def visionzip_row(
    attention: Tensor, keys: Tensor, k: int, dominant_fraction: float = PAPER_DOMINANT,
    count_cls: bool = True,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``merge_into`` and ``merge_weight`` ``[n]`` of one image's ``n`` tokens at budget ``k``.

    ``d = round(k * dominant_fraction)`` dominant tokens. With ``count_cls`` (the released
    code's count) one of them is the [CLS] slot: ``d - 1`` dominant patches, the
    contextual targets spaced over the ``n - d + 1`` others, and the slot filled by the
    highest-attention token that is not a target (it joins no group); without it, ``d``
    dominant patches and the targets spaced over the ``n - d`` others.

    Example:
        >>> att = torch.tensor([0.5, 0.1, 0.3, 0.05, 0.05])
        >>> keys = torch.tensor([[1.0, 0], [0, 1], [0.9, 0.1], [1, 0], [0.1, 0.9]])
        >>> into, weight = visionzip_row(att, keys, 3, dominant_fraction=1 / 3, count_cls=False)
        >>> into.tolist()  # 0 dominant; targets 1 and 3 (every 2nd of 1 2 3 4); 2 -> 3, 4 -> 1
        [0, 1, 3, 3, 1]
        >>> into, weight = visionzip_row(att, keys, 3, dominant_fraction=1 / 3)
        >>> into.tolist()  # no dominant patch; targets 0 and 2; 1 fills the slot; 3 -> 0, 4 -> 2
        [0, 1, 2, 0, 2]
    """
    n = attention.shape[0]
    k = min(k, n)
    into = torch.full((n,), -1, dtype=torch.long)
    weight = torch.ones(n)
    if k <= 0:
        return into, weight
    d = min(k, max(1, round(k * dominant_fraction)))
    m = d - 1 if count_cls else d  # dominant patches
    order = torch.sort(attention.float().cpu(), descending=True, stable=True).indices
    dominant = order[:m]
    into[dominant] = dominant
    rest = torch.sort(order[m:]).values  # the remaining tokens in their original order
    c = min(k - d, rest.numel())
    target = torch.zeros(n, dtype=torch.bool)
    if c > 0:
        step = max(1, rest.numel() // c)
        target[rest[torch.arange(0, rest.numel(), step)[:c]]] = True
    targets = torch.sort(target.nonzero().flatten()).values
    into[targets] = targets
    others = rest[~target[rest]]
    if count_cls:  # the [CLS] slot: the best-attended token left, kept on its own
        ranked = order[m:]
        slot = ranked[~target[ranked]][0]
        into[slot] = slot
        others = others[others != slot]
    if others.numel() and targets.numel():
        unit = keys.float().cpu() / keys.float().cpu().norm(dim=-1, keepdim=True).clamp_min(EPS)
        nearest = (unit[others] @ unit[targets].T).argmax(dim=1)
        counts = torch.bincount(nearest, minlength=targets.numel()).clamp_min(1)
        into[others] = targets[nearest]
        weight[others] = 1.0 / counts[nearest].float()
    return into, weight


@register_scorer
class VisionZipScorer(BudgetedMethod):
    """VisionZip, dominant plus contextual tokens (name ``"visionzip"``).

    Not sync-free: it reads each row's valid tokens and budget back to the host
    (:meth:`row_budgets`) and builds the merge groups row by row.

    Reads the ``"vision_attention"`` and ``"vision_keys"`` signals of vision layer
    ``vision_layer``; ``None`` (default) means the layer whose output feeds the projector
    (``config.vision_feature_layer`` for LLaVA, -2 in LLaVA-1.5 as in the paper; the last
    block for Qwen, whose merger reads it). Merges, so it ignores ``strategy``.
    ``count_cls``: count the [CLS] token among the dominant tokens as the released code
    does (default; its slot goes to one more patch, see the module docstring), or count
    ``d`` dominant patches. See the module docstring for the paper and every deviation.

    Example:
        >>> from vissparse.strategies import TopKStrategy
        >>> x = torch.arange(8.0).view(1, 4, 2)
        >>> ctx = PruningContext(x, torch.ones(1, 2),
        ...                      vision_attention=torch.tensor([[0.1, 0.6, 0.2, 0.1]]),
        ...                      vision_keys=torch.eye(2)[[0, 0, 1, 1]][None])
        >>> sel = VisionZipScorer(dominant_fraction=0.5).plan(ctx, 0.5, TopKStrategy())
        >>> sel.keep.tolist(), sel.merge_into.tolist(), sel.merge_weight.tolist()
        ([[True, True, False, False]], [[0, 1, 0, 0]], [[1.0, 1.0, 0.5, 0.5]])
    """

    name = "visionzip"
    requires = frozenset({"vision_attention", "vision_keys"})

    def __init__(
        self, dominant_fraction: float = PAPER_DOMINANT, vision_layer: int | None = None,
        count_cls: bool = True,
    ) -> None:  # fmt: skip
        if isinstance(dominant_fraction, bool) or not 0 < float(dominant_fraction) <= 1:
            raise ValueError(f"`dominant_fraction` must be in (0, 1], got {dominant_fraction!r}")
        if not isinstance(count_cls, bool):
            raise TypeError(f"`count_cls` must be a bool, got {count_cls!r}")
        self.vision_layer = check_vision_layer(vision_layer)
        self.dominant_fraction = float(dominant_fraction)
        self.count_cls = count_cls

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """Dominant and contextual tokens per image, as a merging selection."""
        attention = ctx.need("vision_attention", self)
        keys = ctx.need("vision_keys", self)
        assert isinstance(attention, Tensor) and isinstance(keys, Tensor)

        def row_fn(row: int, index: Tensor, k: int) -> tuple[Tensor, Tensor]:
            return visionzip_row(attention[row, index], keys[row, index], k,
                                 self.dominant_fraction, self.count_cls)  # fmt: skip

        return self.merge_rows(ctx, keep_ratio, row_fn, merge_sum=True)

    def __repr__(self) -> str:
        return (
            f"VisionZipScorer(dominant_fraction={self.dominant_fraction:.4g}, "
            f"vision_layer={self.vision_layer}, count_cls={self.count_cls})"
        )
