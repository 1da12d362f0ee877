"""TRIM: relevance to the prompt in CLIP's text-aligned space (name ``"trim"``).

Song et al., "Less is More: A Simple yet Effective Token Reduction Method for Efficient
Multi-modal LLMs" (TRIM, COLING 2025, arXiv:2409.10994); released code:
github.com/FreedomIntelligence/TRIM, ``llava/model/multimodal_encoder/clip_encoder.py``
(``token_reduction``, ``TextSim``).

The released code projects LLaVA-1.5's patch features (the vision layer feeding the
projector, -2) with CLIP's ``post_layernorm`` and ``visual_projection``, encodes the prompt
with CLIP's text tower (``text_embeds``, the projected end-of-text token), takes the dot
product of each patch with the prompt, negates it, applies a softmax over the patches
and keeps the top-k: the patches *least* aligned with the prompt. The paper describes
keeping the most similar ones; ``largest=True`` gives that form.

Deviations from the released code:

- top-k of the negated dot product instead of the top-k of its softmax: the same order
  (softmax is monotonic within a row) without float32 ties when the softmax underflows;
- the count is ``keep_ratio``'s, as for every method: ``ceil(keep_ratio * N)`` where the
  released ``TextSim:k`` keeps ``int(k * N)`` (the same set when ``k * N`` is whole, one
  more token otherwise), and the released ``TextSim:-1`` (an adaptive count, the upper
  IQR outliers of the softmax) is not offered;
- ``TextSim+`` (one extra token, the mean of the pruned tokens, appended) is not offered:
  VisSparse keeps exactly the budget's slots;
- the prompt is the user's text as typed, truncated to CLIP's 77-token context.

CLIP's text tower and projections are not part of a LLaVA checkpoint: they come from the
CLIP checkpoint LLaVA's vision tower was taken from (``clip``, loaded on first use by
:class:`vissparse.hf.clip_space.ClipSpace`). A family has this space only when its vision
tower is that CLIP tower: LLaVA-1.5, and approximately LLaVA-NeXT's CLIP variants where
the tower was trained further. The HF pipeline refuses other towers (Qwen's ViTs, SigLIP,
InternViT) when it is set up, by the tower's type, and loads ``clip`` there, refusing a
CLIP checkpoint of another image size, patch size or width. The testbed checkpoints have
no text tower, so ``trim`` has no testbed row. Sync-free: the text is tokenised on the
host from the prompt strings and the ids are copied to the device asynchronously.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, cast

import torch
from torch import Tensor

from vissparse.host_sync import to_device
from vissparse.strategies.base import TokenScorer
from vissparse.strategies.context import PruningContext, check_vision_layer
from vissparse.strategies.registry import register_scorer

# the CLIP checkpoint whose vision tower LLaVA-1.5 (and llava-hf's conversions) carry
CLIP_FOR_LLAVA = "openai/clip-vit-large-patch14-336"
LOAD_OPTIONS = ("local_files_only", "cache_dir", "revision", "token")


class TextAlignedSpace(Protocol):
    """What ``trim`` needs of a text-aligned space (:class:`~vissparse.hf.clip_space.ClipSpace`)."""

    def embed_text(self, texts: Any, device: Any = None) -> Tensor:
        """``[B, E]``: the prompts in the space."""

    def embed_patches(self, features: Tensor) -> Tensor:
        """``[B, N, E]``: the vision features in the space."""


def trim_scores(patches: Tensor, text: Tensor, largest: bool = False) -> Tensor:
    """``[B, N]`` TRIM scores: minus each patch's dot product with its prompt (higher = keep).

    ``patches`` ``[B, N, E]`` and ``text`` ``[B, E]`` are in the shared space;
    ``largest=True`` ranks by the dot product itself (the paper's wording).

    Example:
        >>> patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]])
        >>> trim_scores(patches, torch.tensor([[1.0, 0.0]])).tolist()
        [[-1.0, -0.0, -2.0]]
    """
    dots = torch.einsum("bne,be->bn", patches.float(), text.float().to(patches.device))
    return dots if largest else -dots


@register_scorer
class TrimScorer(TokenScorer):
    """TRIM, relevance to the prompt in CLIP's space (name ``"trim"``).

    Reads the ``"vision_features"`` signal of vision layer ``vision_layer`` (``None``:
    the layer feeding the projector, as in the released code) and the prompt as typed
    (``"prompt_texts"``). ``clip`` is a hub id or a local directory of the CLIP checkpoint
    the vision tower came from (loaded on first use, which the HF pipeline makes its
    set-up; ``load_options`` go to its ``from_pretrained``: ``local_files_only``,
    ``cache_dir``, ``revision``, ``token``), or a loaded space (anything with
    ``embed_text`` and ``embed_patches``). ``largest=False`` keeps the patches least
    aligned with the prompt, as the released code does. See the module docstring for
    every deviation.

    Example:
        >>> from vissparse.hf.clip_space import ClipSpace
        >>> from vissparse.testing_clip import tiny_clip
        >>> scorer = TrimScorer(clip=ClipSpace.from_model(*tiny_clip()))
        >>> ctx = PruningContext(torch.zeros(1, 4, 8), torch.zeros(1, 8),
        ...                      vision_features=torch.randn(1, 4, 32),
        ...                      prompt_texts=["What color is the car?"])
        >>> scorer.score_context(ctx).shape
        torch.Size([1, 4])
    """

    name = "trim"
    requires = frozenset({"vision_features", "prompt_texts"})
    # the vision towers with a text-aligned partner: HF's CLIP vision model
    vision_towers: ClassVar[tuple[str, ...]] = ("clip_vision_model",)

    def __init__(
        self, clip: str | TextAlignedSpace = CLIP_FOR_LLAVA, largest: bool = False,
        vision_layer: int | None = None, load_options: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        is_space = hasattr(clip, "embed_text") and hasattr(clip, "embed_patches")
        if not (isinstance(clip, str) and clip) and not is_space:
            raise ValueError(
                "`clip` must be a CLIP checkpoint (hub id or local directory) or a space with "
                f"`embed_text` and `embed_patches`, got {clip!r}"
            )
        if not isinstance(largest, bool):
            raise ValueError(f"`largest` must be a bool, got {largest!r}")
        options = dict(load_options or {})
        unknown = sorted(set(options) - set(LOAD_OPTIONS))
        if unknown or (options and is_space):
            raise ValueError(
                f"`load_options` takes {', '.join(LOAD_OPTIONS)} for loading `clip` by id or "
                f"folder, got {options!r}" + (" with a loaded space" if is_space else "")
            )
        self.clip = clip
        self.largest = largest
        self.vision_layer = check_vision_layer(vision_layer)
        self.load_options = options
        self._space: TextAlignedSpace | None = None if isinstance(clip, str) else clip

    @property
    def space(self) -> TextAlignedSpace:
        """The text-aligned space, loaded from ``clip`` on first use."""
        if self._space is None:
            from vissparse.hf.clip_space import ClipSpace  # transformers only when used

            assert isinstance(self.clip, str)
            self._space = ClipSpace.from_pretrained(self.clip, **self.load_options)
        return self._space

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Not defined: TRIM reads the vision features and the prompt's text."""
        raise ValueError(
            "`scorer` 'trim' reads the vision features and the prompt's text: use it through "
            "VisSparse or select_tokens with a PruningContext, not score()"
        )

    def score_context(self, ctx: PruningContext) -> Tensor:
        """Minus each token's dot product with its prompt in the space (higher = keep)."""
        features = cast(Tensor, ctx.need("vision_features", self))
        texts = list(cast(Sequence[str], ctx.need("prompt_texts", self)))
        if len(texts) != features.shape[0]:
            raise ValueError(
                f"`prompt_texts` must have one text per image ({features.shape[0]}), "
                f"got {len(texts)}"
            )
        patches = self.space.embed_patches(features.to(ctx.image_tokens.device))
        # each prompt once: a prompt's images (and repeated prompts) share its embedding
        unique = list(dict.fromkeys(texts))
        where = torch.tensor([unique.index(t) for t in texts], dtype=torch.long)
        text = self.space.embed_text(unique, patches.device)
        return trim_scores(patches, text.index_select(0, to_device(where, text.device)),
                           self.largest)  # fmt: skip

    def __repr__(self) -> str:
        clip = self.clip if isinstance(self.clip, str) else type(self.clip).__name__
        return (
            f"TrimScorer(clip={clip!r}, largest={self.largest}, vision_layer={self.vision_layer})"
        )
