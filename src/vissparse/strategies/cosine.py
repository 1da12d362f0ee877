"""Cosine similarity between image tokens and the prompt query."""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.strategies.base import TokenScorer, check_tokens_and_query
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
