"""Downsampling as a baseline: fewer tokens by a smaller image, not by choosing tokens."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from vissparse.strategies.base import MaskStrategy, TokenScorer
from vissparse.strategies.context import PruningContext, Selection
from vissparse.strategies.registry import register_scorer

_ONLY_BEFORE = (
    "`scorer` 'downsample' resizes each image before the processor and keeps every token "
    "the vision encoder emits, so it scores no tokens: use it through VisSparse / "
    "HFPipeline on a Qwen family (on LLaVA-style fixed-size families use 'pool')"
)


def refuse_resizing(scorer: TokenScorer, engine: str, instead: str) -> None:
    """A one-line ``ValueError`` at set-up when ``engine`` is given a resizing scorer.

    ``"downsample"`` works by resizing each image before the processor, which only the
    HF pipeline does; ``engine`` (the mock, the vLLM plugin) would otherwise accept the
    name and fail at the first image. ``instead`` says what to do there.

    Example:
        >>> refuse_resizing(DownsampleScorer(), "the mock", "use scorer='pool'")
        Traceback (most recent call last):
        ...
        ValueError: `scorer` 'downsample' resizes each image before the processor, which the mock does not do; use scorer='pool'
    """  # noqa: E501
    if getattr(scorer, "resizes_images", False):
        name = getattr(scorer, "name", type(scorer).__name__)
        raise ValueError(
            f"`scorer` {name!r} resizes each image before the processor, which {engine} "
            f"does not do; {instead}"
        )


@register_scorer
class DownsampleScorer(TokenScorer):
    """Downsample each image so the encoder emits about ``keep_ratio x n`` tokens (``"downsample"``).

    The baseline of VTC-Bench (arXiv 2510.07143): "downsampling the image beats many
    methods". On families whose processor takes any image size (Qwen2-VL, Qwen2.5-VL,
    Qwen3-VL, Qwen3.5) the HF pipeline resizes each image, PIL bicubic, to the
    merged-token grid whose size is closest to ``keep_ratio`` times the full image's
    (:mod:`vissparse.hf.downsample`), hands it to the unchanged processor, and keeps
    every token the smaller vision-encoder pass emits. So the encoder's cost shrinks
    too, and a timed call counts that. Records report the full-size image's token count
    as ``n_image_tokens`` and the emitted count as ``n_kept``; their ratio (the
    effective keep ratio) is within one merge unit per side of ``keep_ratio``, not
    exactly ``ceil(keep_ratio x n)``.

    Deviation from VTC-Bench: it divides each side by an integer factor ``r`` (budgets
    ``1 / r**2``); here the per-side factor is about ``1 / sqrt(keep_ratio)``, rounded to
    whole merge units, so every keep ratio has a row.

    On the testbed: the ``qwen2_vl`` checkpoint was trained at one image size only
    (every scene is 128 x 128 and its processor pins ``min_pixels = max_pixels = 128**2``,
    so 16 x 16 tokens), so a downsampled image is a size it never saw; that puts this
    baseline at a disadvantage there. The processor's ``min_pixels`` is lowered for the
    downsampled call, or it would scale the image back up.

    LLaVA-1.5 / LLaVA-NeXT / InternVL / Gemma 3 resize every image to a fixed size, so
    they refuse it; ``"pool"`` (average pooling on the token grid) is their analogue.
    This class is only the marker the HF pipeline reads (``resizes_images``): after the
    encoder it keeps every token (the pipeline calls it at keep ratio 1.0), and any other
    engine or a keep ratio below 1.0 gets a one-line ``ValueError``.

    Example:
        >>> import torch
        >>> ctx = PruningContext(torch.zeros(1, 3, 2), torch.zeros(1, 2))
        >>> DownsampleScorer().plan(ctx, 1.0, None).keep.tolist()
        [[True, True, True]]
        >>> DownsampleScorer().plan(ctx, 0.5, None)
        Traceback (most recent call last):
        ...
        ValueError: `scorer` 'downsample' resizes each image before the processor and keeps every token the vision encoder emits, so it scores no tokens: use it through VisSparse / HFPipeline on a Qwen family (on LLaVA-style fixed-size families use 'pool')
    """  # noqa: E501

    name = "downsample"
    resizes_images: ClassVar[bool] = True
    # at keep ratio 1.0 (how the pipeline calls it) top-k's budget is every token: kept
    exact_budget: ClassVar[bool] = True

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Not defined: the image is made smaller before the encoder; see the class."""
        raise ValueError(_ONLY_BEFORE)

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """Keep every token of the (already downsampled) image; ``keep_ratio`` 1.0."""
        if keep_ratio != 1.0:
            raise ValueError(_ONLY_BEFORE)
        return Selection(ctx.budget_mask().clone())
