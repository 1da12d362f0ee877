"""Cosine similarity between image tokens and the prompt query."""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.host_sync import values_on_host
from vissparse.strategies.base import TokenScorer, check_tokens_and_query
from vissparse.strategies.context import PruningContext
from vissparse.strategies.registry import register_scorer

EPS = 1e-8


def cosine_scores(image_tokens: Tensor, query: Tensor, eps: float = EPS) -> Tensor:
    """Cosine similarity of every token with its row's query, in float32.

    Zero vectors (token or query) score 0, never NaN.

    Example:
        >>> cosine_scores(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), torch.tensor([[2.0, 0.0]]))
        tensor([[1., 0.]])
    """
    tokens = image_tokens.float()
    q = query.float()
    dots = torch.einsum("bnd,bd->bn", tokens, q)
    norms = tokens.norm(dim=-1).clamp_min(eps) * q.norm(dim=-1, keepdim=True).clamp_min(eps)
    return dots / norms


@register_scorer
class CosineScorer(TokenScorer):
    """Score = cosine(image token, query); the default scorer (name ``"cosine"``).

    ``largest=True`` keeps the tokens most similar to the prompt. ``largest=False`` keeps
    the least similar ones, as the published CLIP-space methods TRIM and CDPruner do (they
    negate their text-image similarity); both directions are offered so benchmarks can
    compare them against a random baseline.

    Example:
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> CosineScorer().score(tokens, torch.tensor([[1.0, 0.0]]))
        tensor([[1., 0.]])
        >>> CosineScorer(largest=False).score(tokens, torch.tensor([[1.0, 0.0]]))
        tensor([[-1., -0.]])
    """

    name = "cosine"

    def __init__(self, largest: bool = True) -> None:
        if not isinstance(largest, bool):
            raise TypeError(f"`largest` must be a bool, got {largest!r}")
        self.largest = largest

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Cosine similarity (negated when ``largest=False``), float32 ``[B, N]``."""
        check_tokens_and_query(image_tokens, query, valid)
        sims = cosine_scores(image_tokens, query)
        return sims if self.largest else -sims

    def __repr__(self) -> str:
        return f"CosineScorer(largest={self.largest})"


@register_scorer
class LeastCosineScorer(CosineScorer):
    """Keep the tokens LEAST similar to the query (name ``"cosine-least"``).

    The direction TRIM and CDPruner use; the same as ``CosineScorer(largest=False)``.

    Example:
        >>> LeastCosineScorer().largest
        False
    """

    name = "cosine-least"

    def __init__(self) -> None:
        super().__init__(largest=False)


def max_cosine_scores(image_tokens: Tensor, words: Tensor, word_mask: Tensor,
                      eps: float = EPS) -> Tensor:  # fmt: skip
    """``[B, N]`` float32: each token's highest cosine with any of its row's words.

    ``words`` is ``[B, T, D]`` with ``word_mask`` ``[B, T]`` marking the words to use.

    Example:
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
        >>> words = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [9.0, 9.0]]])
        >>> max_cosine_scores(tokens, words, torch.tensor([[True, True, False]])).tolist()
        [[1.0, 1.0, 0.7071067690849304]]
    """
    t = image_tokens.float()
    w = words.float().to(t.device)
    mask = word_mask.to(t.device)

    def unit(x: Tensor) -> Tensor:
        return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)

    # row by row: batched kernels may round differently with the batch size, and a
    # row's scores must not depend on the other rows; the unused words are masked out
    # of the maximum (fixed shapes: no host synchronisation)
    rows = [(unit(t[b]) @ unit(w[b]).T).masked_fill(~mask[b], float("-inf")).amax(dim=-1)
            for b in range(t.shape[0])]  # fmt: skip
    return torch.stack(rows) if rows else t.new_zeros(t.shape[:2])


@register_scorer
class MaxCosineScorer(TokenScorer):
    """Score = the highest cosine between a token and any single prompt word (``"cosine-max"``).

    The default ``"cosine"`` compares each token with the mean of the prompt's word
    embeddings, which blurs a question about two things into one direction; here a token
    scores high if it matches any one word. Needs the ``"prompt_embeddings"`` signal
    (the prompt's input embeddings and the mask of the user's words), which the HF and
    mock pipelines fill.

    Example:
        >>> from vissparse.strategies.context import PruningContext
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
        >>> words = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> ctx = PruningContext(tokens, words.mean(1), prompt_embeddings=words,
        ...                      prompt_mask=torch.tensor([[True, True]]))
        >>> MaxCosineScorer().score_context(ctx).tolist()
        [[1.0, 1.0, 0.0]]
    """

    name = "cosine-max"
    requires = frozenset({"prompt_embeddings"})

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Not defined on a single query: raises; use :meth:`score_context`."""
        raise ValueError(
            "`scorer` 'cosine-max' needs the prompt's word embeddings: call score_context "
            "with a PruningContext that has `prompt_embeddings` and `prompt_mask`"
        )

    def score_context(self, ctx: PruningContext) -> Tensor:
        """Max-over-words cosine, float32 ``[B, N]``."""
        check_tokens_and_query(ctx.image_tokens, ctx.query, ctx.valid)
        words = ctx.need("prompt_embeddings", self)
        mask = ctx.need("prompt_mask", self)
        assert isinstance(words, Tensor) and isinstance(mask, Tensor)
        if words.dim() != 3 or words.shape[0] != ctx.image_tokens.shape[0] \
                or mask.shape != words.shape[:2]:  # fmt: skip
            raise ValueError(
                f"`prompt_embeddings` must be [B, T, D] with `prompt_mask` [B, T] for "
                f"B = {ctx.image_tokens.shape[0]}, got {tuple(words.shape)} and "
                f"{tuple(mask.shape)}"
            )
        if values_on_host(mask) and bool((~mask.any(dim=1)).any()):
            raise ValueError("`prompt_mask` marks no word in some row")
        return max_cosine_scores(ctx.image_tokens, words, mask)
