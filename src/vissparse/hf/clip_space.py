"""CLIP's shared image-text space, for methods that rank image tokens against the prompt there.

A LLaVA-1.5 checkpoint carries CLIP's vision tower but neither CLIP's text tower nor its
``visual_projection``: :class:`ClipSpace` loads those from the CLIP checkpoint the vision
tower came from (``openai/clip-vit-large-patch14-336`` for LLaVA-1.5), by hub id or local
directory, and keeps only what the space needs: the text tower and its projection, the
vision tower's ``post_layernorm`` and ``visual_projection`` (the vision layers are dropped
after loading). ``trim`` (:class:`vissparse.strategies.trim.TrimScorer`) reads it.

Families whose vision tower has no text-aligned patch space (Qwen's ViTs; SigLIP towers,
which pool with an attention head and have no patch projection) are refused when the
pipeline is set up (:func:`check_vision_tower`, by the tower's ``model_type``), as is a
CLIP checkpoint of another image size, patch size or width; the width check of
:meth:`ClipSpace.embed_patches` is a last guard. A CLIP tower of the same shape whose
weights were trained further with the language model is not detected: its space is then
only approximately CLIP's (check whether a checkpoint froze its tower).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vissparse.hf.loading import not_found_error
from vissparse.host_sync import to_device
from vissparse.strategies.trim import CLIP_FOR_LLAVA

__all__ = ["CLIP_FOR_LLAVA", "ClipSpace", "check_vision_tower", "vision_geometry"]


def vision_geometry(config: Any) -> tuple[int, int, int] | None:
    """``(image_size, patch_size, hidden_size)`` of a vision config, or ``None``.

    Example:
        >>> from transformers import CLIPVisionConfig
        >>> vision_geometry(CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=768))
        (336, 14, 768)
    """
    try:
        return int(config.image_size), int(config.patch_size), int(config.hidden_size)
    except (AttributeError, TypeError, ValueError):
        return None


def check_vision_tower(scorer: Any, model: Any) -> None:
    """Refuse a scorer that reads a space ``model``'s vision tower does not have.

    A method that reads a space only some vision towers have (``trim``: CLIP's
    text-aligned space) lists their ``model_type`` in ``vision_towers``; its ``space`` is
    loaded here (a missing checkpoint fails at set-up, not at the first call) and the
    CLIP tower it belongs to must have the model's image size, patch size and width.

    Example:
        >>> from vissparse.strategies import TrimScorer
        >>> from vissparse.testing import tiny_model
        >>> from vissparse.testing_clip import tiny_clip
        >>> model = tiny_model("llava")[0]
        >>> space = ClipSpace.from_model(*tiny_clip(model.model.vision_tower))
        >>> check_vision_tower(TrimScorer(clip=space), model)
    """
    towers = getattr(scorer, "vision_towers", None)
    if towers is None:
        return
    name = getattr(scorer, "name", type(scorer).__name__)
    vision = getattr(getattr(model, "config", None), "vision_config", None)
    kind = getattr(vision, "model_type", None)
    if kind not in towers:
        raise ValueError(
            f"`scorer` {name!r} needs a vision tower of type {', '.join(map(repr, towers))} "
            f"with a text-aligned patch space; this model's vision tower is {kind!r}, which "
            "has none"
        )
    expected = getattr(getattr(scorer, "space", None), "vision_geometry", None)
    found = vision_geometry(vision)
    if expected is not None and found is not None and expected != found:
        raise ValueError(
            f"`clip` of `scorer` {name!r} is a CLIP tower with (image size, patch size, "
            f"width) {expected}, this model's vision tower has {found}: pass the CLIP "
            "checkpoint the model's vision tower was taken from"
        )


class ClipSpace(nn.Module):
    """CLIP's text tower and projections: prompts and patch features in one space.

    Args:
        text_model: CLIP's text transformer (``CLIPModel.text_model``).
        text_projection: its projection into the shared space.
        post_layernorm: the vision tower's final LayerNorm.
        visual_projection: the vision projection into the shared space.
        tokenizer: CLIP's tokenizer (called on a list of strings).
        max_length: the text tower's context (prompts are truncated to it).

    Example:
        >>> from vissparse.testing_clip import tiny_clip
        >>> space = ClipSpace.from_model(*tiny_clip())
        >>> space.embed_text(["What color is the car?"]).shape[0]
        1
    """

    text_projection: nn.Linear
    visual_projection: nn.Linear

    def __init__(
        self, text_model: nn.Module, text_projection: nn.Linear, post_layernorm: nn.Module,
        visual_projection: nn.Linear, tokenizer: Any, max_length: int = 77,
    ) -> None:  # fmt: skip
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        self.post_layernorm = post_layernorm
        self.visual_projection = visual_projection
        self.tokenizer = tokenizer
        self.max_length = max_length
        # (image_size, patch_size, hidden_size) of the CLIP tower (None: not known)
        self.vision_geometry: tuple[int, int, int] | None = None
        self.eval()

    @property
    def vision_width(self) -> int:
        """The width of the vision features the space takes (the vision tower's hidden size)."""
        return int(self.visual_projection.weight.shape[1])

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any) -> ClipSpace:
        """The space of a loaded ``CLIPModel`` and its tokenizer (the vision layers unused)."""
        for part in ("text_model", "text_projection", "vision_model", "visual_projection"):
            if not hasattr(model, part):
                raise ValueError(
                    f"`model` must be a CLIP model (CLIPModel) with a `{part}`, got "
                    f"{type(model).__name__}"
                )
        length = getattr(model.config.text_config, "max_position_embeddings", 77)
        space = cls(model.text_model, model.text_projection, model.vision_model.post_layernorm,
                    model.visual_projection, tokenizer, int(length))  # fmt: skip
        space.vision_geometry = vision_geometry(model.config.vision_config)
        return space

    @classmethod
    def from_pretrained(cls, source: str = CLIP_FOR_LLAVA, **options: Any) -> ClipSpace:
        """Load the space from a hub id or a local directory (``CLIPModel`` + tokenizer).

        ``options`` go to both ``from_pretrained`` calls (``local_files_only``,
        ``cache_dir``, ``revision``, ``token``). Missing weights raise
        :class:`vissparse.hf.loading.ModelNotFoundError` naming ``clip``.
        """
        from transformers import AutoTokenizer, CLIPModel

        usage = "TrimScorer(clip='{path}')"
        try:
            model = CLIPModel.from_pretrained(source, **options)
            tokenizer = AutoTokenizer.from_pretrained(source, **options)
        except OSError as err:
            raise not_found_error(source, err, argument="clip", usage=usage) from err
        return cls.from_model(model, tokenizer)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], device: torch.device | str | None = None) -> Tensor:
        """``[B, E]`` float32: each text's projected end-of-text embedding (``text_embeds``).

        Not normalised, as the released TRIM code uses it. Prompts longer than the text
        tower's context are truncated.
        """
        if isinstance(texts, str) or not texts:
            raise ValueError(f"`texts` must be a non-empty list of strings, got {texts!r}")
        self._move(device)
        ids = self.tokenizer(list(texts), padding=True, truncation=True, padding_side="right",
                             max_length=self.max_length, return_tensors="pt")  # fmt: skip
        # no attention mask: the tower is causal and the padding follows the end-of-text
        # token it pools, so the mask changes nothing there; given, transformers would
        # read it on the host (a device sync)
        input_ids = to_device(ids["input_ids"], self.text_projection.weight.device)
        pooled = self.text_model(input_ids=input_ids).pooler_output
        return self.text_projection(pooled).float()

    @torch.inference_mode()
    def embed_patches(self, features: Tensor) -> Tensor:
        """``[..., E]`` float32: vision features (``[..., vision_width]``) in the shared space.

        ``post_layernorm`` then ``visual_projection``, as CLIP projects its pooled token.
        """
        if features.shape[-1] != self.vision_width:
            raise ValueError(
                f"the CLIP space takes vision features of width {self.vision_width}, got "
                f"{features.shape[-1]}: this model's vision tower is not the CLIP tower of "
                "`clip`"
            )
        self._move(features.device)
        weight = self.visual_projection.weight
        return self.visual_projection(self.post_layernorm(features.to(weight.dtype))).float()

    def _move(self, device: torch.device | str | None) -> None:
        """Follow the features to their device (once per device change)."""
        if device is not None and self.text_projection.weight.device != torch.device(device):
            self.to(device)
