"""Attention scorers for pruning inside the language model: FastV, PyramidDrop, text-attn.

They rank image tokens by the attention text tokens pay them at the layer before
pruning (signal ``"text_attention"``), so they only work with ``stage="llm"`` and
``layer >= 1``. They differ in whose attention counts (``attention_rows``):

- ``fastv`` (Chen et al., 2024): the last token of the input;
- ``pdrop`` (Xing et al., 2024): the last instruction token, here the last of the
  user's words (the chat template's tokens after it do not count);
- ``text-attn``: every word of the user's prompt, averaged.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from vissparse.strategies.base import TokenScorer
from vissparse.strategies.context import PruningContext
from vissparse.strategies.registry import register_scorer


@register_scorer
class TextAttentionScorer(TokenScorer):
    """Score = the attention the prompt's words pay each image token (``"text-attn"``).

    For ``stage="llm"`` only, whose pruning inside the language model is not sync-free
    (it reads per-layer counts back); the scoring itself is fixed-shape tensor code.

    Example:
        >>> import torch
        >>> ctx = PruningContext(torch.zeros(1, 3, 2), torch.ones(1, 2),
        ...                      text_attention=torch.tensor([[0.2, 0.5, 0.1]]))
        >>> TextAttentionScorer().score_context(ctx).tolist()
        [[0.20000000298023224, 0.5, 0.10000000149011612]]
    """

    name = "text-attn"
    requires = frozenset({"text_attention"})
    attention_rows: ClassVar[str] = "prompt"

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Not defined: the scores are attention inside the language model."""
        raise ValueError(
            f"`scorer` {self.name!r} reads attention inside the language model: use it with "
            "stage='llm' (VisSparse(..., stage='llm', layer=2))"
        )

    def score_context(self, ctx: PruningContext) -> Tensor:
        """The ``text_attention`` signal, float32 ``[B, N]``."""
        attention = ctx.need("text_attention", self)
        assert isinstance(attention, Tensor)
        return attention.float()


@register_scorer
class FastVScorer(TextAttentionScorer):
    """FastV: the attention of the input's last token (``"fastv"``)."""

    name = "fastv"
    attention_rows = "last"


@register_scorer
class PDropScorer(TextAttentionScorer):
    """PyramidDrop: the attention of the last instruction token (``"pdrop"``)."""

    name = "pdrop"
    attention_rows = "instruction"
