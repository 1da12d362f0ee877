"""Qwen2-VL and Qwen2.5-VL: ViT with a patch merger and 3-D M-RoPE positions."""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from vissparse.adapters.base import FamilySpec, TokenGrid, VLMAdapter
from vissparse.adapters.vision_signals import layer_index, qwen_received_attention

_QWEN_PLACEHOLDERS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")

QWEN2_VL = FamilySpec(
    name="qwen2_vl",
    model_types=("qwen2_vl",),
    positions="mrope",
    feature_inputs=("pixel_values", "image_grid_thw"),
    placeholders=_QWEN_PLACEHOLDERS,
    image_newline=False,
    processor_class="Qwen2VLProcessor",
    image_processor_class="Qwen2VLImageProcessorPil",
    layout="merged_grid",
)


class QwenVLAdapter(VLMAdapter):
    """M-RoPE: 3-D ids computed on the full sequence; the model's cached deltas reset."""

    def position_ids(self, inputs: dict[str, Any]) -> Tensor:
        """``[3, B, L]`` M-RoPE ids of the full sequence (pads at 0)."""
        input_ids = inputs["input_ids"]
        token_types = inputs.get("mm_token_type_ids")
        if token_types is None:  # transformers 5.x needs it; rebuild it from the ids
            token_types = (input_ids == self.image_token_id).long()
        position_ids, _ = self.model.model.get_rope_index(
            input_ids,
            token_types,
            image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )
        return position_ids

    def reset_state(self) -> None:
        """Qwen models cache ``rope_deltas`` on the model between calls: clear them."""
        self.model.model.rope_deltas = None

    def token_grid(self, inputs: dict[str, Any], image_index: int) -> TokenGrid:
        """The merged-token grid ``(grid_h / merge, grid_w / merge)``, raster order.

        ``image_grid_thw`` counts ViT patches of the resized image; the merger folds each
        ``merge x merge`` block into one token, so the image's tokens form this grid.
        """
        grid_thw = inputs["image_grid_thw"]
        if not 0 <= image_index < grid_thw.shape[0]:
            raise IndexError(f"image_index {image_index} out of range: {grid_thw.shape[0]} images")
        t, h, w = (int(x) for x in grid_thw[image_index])
        if t != 1:
            raise ValueError(f"image {image_index} has {t} temporal patches; expected 1")
        merge = int(self.model.config.vision_config.spatial_merge_size)
        return TokenGrid(rows=h // merge, cols=w // merge)

    def vision_attention(self, layer: int) -> tuple[Any, Any]:
        """The vision block's ``attn`` at ``layer``; attention received is read from it."""
        blocks = self.model.model.visual.blocks
        return blocks[layer_index(layer, len(blocks))].attn, qwen_received_attention

    def projector(self) -> Any:
        """The patch merger: its input is the last block's patch features."""
        return self.model.model.visual.merger

    def align_rows(
        self, inputs: dict[str, Any], values: Tensor, encoder_rows: bool
    ) -> list[Tensor]:
        """Per-patch ``[seq, d]`` values as one ``[n_i, d]`` tensor per image, token-aligned.

        The merger folds ``merge x merge`` consecutive patches into one token, so a
        token's value is the mean over its unit. Qwen2.5-VL runs its blocks (and feeds
        the merger) in window order and restores raster order after the merger; the same
        permutation is undone here.
        """
        unit = int(self.model.config.vision_config.spatial_merge_size) ** 2
        pooled = values.reshape(-1, unit, values.shape[-1]).mean(dim=1)
        grid_thw = inputs["image_grid_thw"]
        if self.spec.name == "qwen2_5_vl":
            order = _window_index(self.model.model.visual, grid_thw).to(pooled.device)
            pooled = pooled[torch.argsort(order)]
        return list(pooled.split((grid_thw.prod(dim=-1) // unit).tolist()))

    def grid_picture(self, image: Image.Image, image_processor: Any) -> Image.Image:
        """The whole image: the processor resizes it keeping the aspect ratio.

        The resized sides are rounded to multiples of ``patch_size * merge_size`` (28
        pixels), so grid lines drawn over the original are off by at most half of that.
        """
        return image


def _window_index(visual: Any, grid_thw: Tensor) -> Tensor:
    """Qwen2.5-VL's window order of merge units (the method moved between releases)."""
    if hasattr(visual, "get_window_index"):  # transformers < 5.2x
        return visual.get_window_index(grid_thw)[0]
    from transformers.vision_utils import get_vision_window_index

    return get_vision_window_index(
        grid_thw, spatial_merge_size=visual.spatial_merge_size, window_size=visual.window_size,
        patch_size=visual.patch_size,
    )[0]  # fmt: skip


@cache
def image_only_processor_class(base: type) -> type:
    """A processor class that needs no video processor (hence no torchvision).

    Qwen2VLProcessor declares a ``video_processor`` attribute that ``ProcessorMixin``
    type-checks against a class that exists only with torchvision. Leaving it out of
    ``__init__``'s signature removes it from the processor's attributes.

    Example:
        >>> from transformers import Qwen2VLProcessor
        >>> image_only_processor_class(Qwen2VLProcessor).__name__
        'Qwen2VLProcessorImageOnly'
    """

    class ImageOnly(base):  # type: ignore[valid-type,misc]
        def __init__(
            self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None,
            **kwargs: Any,
        ) -> None:  # fmt: skip
            parent_init: Any = base.__init__  # type: ignore[misc]
            parent_init(
                self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs
            )

    # its other options (LLaVA-OneVision's num_image_tokens, ...) stay in the signature,
    # which is what save_pretrained writes to processor_config.json
    signature = inspect.signature(base.__init__)  # type: ignore[misc]
    params = [p for name, p in signature.parameters.items() if name != "video_processor"]
    init: Any = ImageOnly.__init__
    init.__signature__ = signature.replace(parameters=params)
    ImageOnly.__name__ = ImageOnly.__qualname__ = f"{base.__name__}ImageOnly"
    return ImageOnly
