"""The selection core every engine calls: query, context, scoring, selection, merging.

The HF pipeline (:mod:`vissparse.hf.pipeline`), its in-LLM stage and the vLLM plugin
(:mod:`vissparse.vllm`) adapt their inputs to one batch of images (one row per image,
``[n_images, N, D]`` tokens with a ``valid`` mask) and call :meth:`SelectionCore.choose`.
None of them scores, selects or merges on its own, so a method (a registered name or a
user's :class:`~vissparse.strategies.base.TokenScorer`) picks the same tokens in every
engine given the same tokens and prompt. Pure tensor code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vissparse.query import query_from_embeddings
from vissparse.strategies.base import MaskStrategy, TokenScorer, required_signals, select_tokens
from vissparse.strategies.context import ImageLayout, PruningContext, merge_tokens
from vissparse.strategies.registry import build_scorer, build_strategy

__all__ = ["Choice", "SelectionCore", "pad_rows", "query_from_embeddings"]


@dataclass
class Choice:
    """What the core decided for a batch of images.

    Attributes:
        keep: ``[n_images, N]`` bool keep mask (padding ``False``).
        merged: ``[n_images, N, D]`` tokens after merging (a merging method's kept tokens
            hold their group's value), or ``None`` for a mask-only method.
    """

    keep: Tensor
    merged: Tensor | None = None

    def kept_tokens(self, tokens: Tensor, image: int, n: int) -> Tensor:
        """Image ``image``'s kept tokens in their original order, merged values included.

        Example:
            >>> choice = Choice(torch.tensor([[True, False, True]]))
            >>> choice.kept_tokens(torch.arange(3.0).view(1, 3, 1), 0, 3).flatten().tolist()
            [0.0, 2.0]
        """
        values = tokens if self.merged is None else self.merged
        return values[image, :n][self.keep[image, :n]]


class SelectionCore:
    """One method (scorer + strategy): the signals it reads, and its choice per image.

    Example:
        >>> core = SelectionCore("cosine-mean", "topk")
        >>> tokens = torch.eye(4)[None]
        >>> ctx = core.context(tokens, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
        >>> core.choose(ctx, 0.25).keep.tolist()
        [[False, False, True, False]]
    """

    def __init__(self, scorer: str | TokenScorer, strategy: str | MaskStrategy) -> None:
        self.scorer = build_scorer(scorer)
        self.strategy = build_strategy(strategy)
        self.signals = required_signals(self.scorer)

    @property
    def name(self) -> str:
        """The scorer's registered name (or its class name)."""
        return str(getattr(self.scorer, "name", type(self.scorer).__name__))

    def context(
        self, tokens: Tensor, query: Tensor, valid: Tensor | None = None,
        present: Tensor | None = None, *, prompt_embeddings: Tensor | None = None,
        prompt_mask: Tensor | None = None, layouts: Sequence[ImageLayout] | None = None,
        keys: Sequence[bytes] | None = None, vision: Any = None,
        text_attention: Tensor | None = None, content_mask: Tensor | None = None,
        texts: Sequence[str] | None = None,
    ) -> PruningContext:  # fmt: skip
        """The :class:`PruningContext` of a batch of images, with the signals asked for.

        Every argument has one row per image. ``prompt_embeddings`` / ``prompt_mask``
        (the prompt's word embeddings) and ``content_mask`` (its content words,
        :mod:`vissparse.content_words`) and ``texts`` (the prompt as typed) reach the
        context only when the method reads them;
        ``vision`` is an object with per-image ``attention`` / ``keys`` / ``features``
        lists (:class:`vissparse.adapters.vision_signals.VisionSignals`), or ``None``.
        """
        if valid is None:
            valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        words = "prompt_embeddings" in self.signals
        return PruningContext(
            tokens, query, valid, present,
            prompt_embeddings=prompt_embeddings if words else None,
            prompt_mask=prompt_mask if words else None,
            content_mask=content_mask if words else None,
            layouts=layouts, sample_keys=keys,
            vision_attention=pad_rows(None if vision is None else vision.attention, valid),
            vision_keys=pad_rows(None if vision is None else vision.keys, valid),
            vision_features=pad_rows(None if vision is None else vision.features, valid),
            text_attention=text_attention,
            prompt_texts=texts if "prompt_texts" in self.signals else None,
        )  # fmt: skip

    def choose(self, ctx: PruningContext, keep_ratio: float) -> Choice:
        """Score, select and (for a merging method) merge: the kept tokens of each image."""
        selection = select_tokens(self.scorer, self.strategy, ctx, keep_ratio)
        merged = None
        if selection.merge_into is not None:
            merged = merge_tokens(ctx.image_tokens, selection)
        return Choice(selection.keep, merged)


def pad_rows(rows: list[Tensor] | None, like: Tensor) -> Tensor | None:
    """Per-image ``[n_i, ...]`` tensors stacked to ``[n_images, N, ...]``, zero-padded.

    Example:
        >>> pad_rows([torch.ones(2), torch.ones(1)], torch.zeros(2, 3, dtype=torch.bool))
        tensor([[1., 1., 0.],
                [1., 0., 0.]])
    """
    if rows is None:
        return None
    out = torch.zeros(*like.shape, *rows[0].shape[1:], dtype=torch.float32,
                      device=like.device) if rows else torch.zeros(0)  # fmt: skip
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row.to(out.device, torch.float32)
    return out
