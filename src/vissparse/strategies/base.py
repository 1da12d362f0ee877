"""Abstract interfaces for token scorers and mask strategies.

Pure tensor code: nothing here imports transformers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


def check_tokens_and_query(image_tokens: Tensor, query: Tensor, valid: Tensor | None) -> None:
    """Raise a clear error when the shapes of a scorer's inputs do not fit together.

    Example:
        >>> check_tokens_and_query(torch.zeros(2, 5, 8), torch.zeros(2, 8), None)
    """
    if image_tokens.dim() != 3:
        raise ValueError(
            f"`image_tokens` must have shape [B, N, D], got {tuple(image_tokens.shape)}"
        )
    b, _, d = image_tokens.shape
    if query.shape != (b, d):
        raise ValueError(
            f"`query` must have shape [B, D] = [{b}, {d}] to match `image_tokens`, "
            f"got {tuple(query.shape)}"
        )
    check_valid(valid, image_tokens.shape[:2])


def check_valid(valid: Tensor | None, shape: torch.Size | tuple[int, ...]) -> None:
    """Raise when a `valid` mask is not a bool tensor of the given [B, N] shape.

    Example:
        >>> check_valid(torch.ones(2, 5, dtype=torch.bool), (2, 5))
    """
    if valid is None:
        return
    if valid.dtype != torch.bool or tuple(valid.shape) != tuple(shape):
        raise ValueError(
            f"`valid` must be a bool tensor of shape {tuple(shape)}, "
            f"got dtype {valid.dtype} and shape {tuple(valid.shape)}"
        )


class TokenScorer(ABC):
    """Scores image tokens: higher means more worth keeping.

    Contract of :meth:`score`:

    - ``image_tokens``: ``[B, N, D]`` image tokens of one image per row, already in the
      space the query lives in (for real models: after the projector/merger, i.e. the
      language model's input-embedding space). Any floating dtype.
    - ``query``: ``[B, D]`` one query vector per row, derived from the prompt.
    - ``valid``: optional ``[B, N]`` bool mask; ``False`` marks padding tokens. A scorer
      may give padding any value: strategies never keep invalid tokens.
    - returns ``[B, N]`` float32 scores on the device of ``image_tokens``, with no NaN.
    - rows are independent unless a scorer documents otherwise (``RandomScorer`` draws
      from one seeded stream).

    Scorers that need more context than tokens and query (attention maps, hidden states)
    must take it through an explicit argument, never by reaching into a model.

    Example:
        >>> class NormScorer(TokenScorer):
        ...     name = "norm"
        ...     def score(self, image_tokens, query, valid=None):
        ...         return image_tokens.float().norm(dim=-1)
        >>> NormScorer().score(torch.ones(1, 3, 4), torch.ones(1, 4)).shape
        torch.Size([1, 3])
    """

    name: str = "custom"

    @abstractmethod
    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Return ``[B, N]`` float32 scores, higher = keep."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MaskStrategy(ABC):
    """Turns scores into a keep mask.

    Contract of :meth:`select`:

    - ``scores``: ``[B, N]`` float scores (higher = keep).
    - ``keep_ratio``: fraction of each row's valid tokens to keep, in ``[0.05, 1.0]``.
    - ``valid``: optional ``[B, N]`` bool mask; invalid (padding) tokens are never kept.
    - returns ``[B, N]`` bool, ``True`` = keep; deterministic for the same inputs.

    Example:
        >>> class KeepAll(MaskStrategy):
        ...     name = "all"
        ...     def select(self, scores, keep_ratio, valid=None):
        ...         return torch.ones_like(scores, dtype=torch.bool)
        >>> KeepAll().select(torch.zeros(1, 3), 0.5).tolist()
        [[True, True, True]]
    """

    name: str = "custom"

    @abstractmethod
    def select(self, scores: Tensor, keep_ratio: float, valid: Tensor | None = None) -> Tensor:
        """Return a ``[B, N]`` bool keep mask."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
