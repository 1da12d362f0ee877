"""LLaVA-OneVision: SigLIP tower (no [CLS]), anyres-max-9 tiles with newlines, Qwen2 LM."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor

from vissparse.adapters.base import TokenGrid
from vissparse.adapters.llava import LlavaAdapter
from vissparse.adapters.llava_next import LLAVA_NEXT
from vissparse.adapters.vision_signals import encoder_layers, layer_index, siglip_compute

# Like LLaVA-NeXT, an image is [base tile | anyres rows, each closed by a newline]; with
# anyres-max-9 the rows are downsampled when the image would exceed 9 tiles, and an image
# of a multi-image prompt is its base tile and one newline.
LLAVA_ONEVISION = replace(
    LLAVA_NEXT,
    name="llava_onevision",
    model_types=("llava_onevision",),
    feature_inputs=("pixel_values", "image_sizes"),
    placeholders=("<image>", "<video>"),
    processor_class="LlavaOnevisionProcessor",
    image_processor_class="LlavaOnevisionImageProcessorPil",
    nested_images=True,
)


class LlavaOnevisionAdapter(LlavaAdapter):
    """LLaVA-NeXT's geometry with a SigLIP tower: no [CLS], attention received instead."""

    def image_features(self, inputs: dict[str, Any]) -> list[Tensor]:
        """One ``[n_i, D]`` tensor per image; multi-image prompts are not tiled."""
        output = self.model.model.get_image_features(
            inputs["pixel_values"], inputs["image_sizes"],
            batch_num_images=inputs.get("batch_num_images"),
        )  # fmt: skip
        return list(output.pooler_output)

    def token_grid(self, inputs: dict[str, Any], image_index: int) -> TokenGrid:
        """The SigLIP patch grid of the base tile: the image's first tokens (no [CLS])."""
        grid = super().token_grid(inputs, image_index)
        return replace(grid, start=0)

    def vision_attention(self, layer: int) -> tuple[Any, Any]:
        """SigLIP's ``self_attn`` at ``layer``: the attention each patch receives."""
        layers = encoder_layers(self.model.model.vision_tower)
        return layers[layer_index(layer, len(layers))].self_attn, siglip_compute

    def _tiles(self, inputs: dict[str, Any]) -> list[int]:
        """Tiles per image as the model encodes them (one for a multi-image prompt)."""
        from transformers.models.llava_onevision.modeling_llava_onevision import (
            image_size_to_num_patches,
        )

        config = self.model.config
        counts = inputs.get("batch_num_images")
        tiled = ([True] * len(inputs["image_sizes"]) if counts is None
                 else [int(n) == 1 for n in counts for _ in range(int(n))])  # fmt: skip
        return [
            image_size_to_num_patches(size, config.image_grid_pinpoints,
                                      config.vision_config.image_size) if tile else 1
            for size, tile in zip(inputs["image_sizes"], tiled, strict=True)
        ]  # fmt: skip

    def align_rows(
        self, inputs: dict[str, Any], values: Tensor, encoder_rows: bool
    ) -> list[Tensor]:
        """Per-tile rows ``[T, S, d]`` packed like the features (newline tokens get 0)."""
        aspect = getattr(self.model.config, "vision_aspect_ratio", "anyres_max_9")
        out: list[Tensor] = []
        offset = 0
        for i, n_tiles in enumerate(self._tiles(inputs)):
            rows = values[offset : offset + n_tiles]
            offset += n_tiles
            packed, _ = self.model.model.pack_image_features(
                [rows], inputs["image_sizes"][i : i + 1],
                image_newline=rows.new_zeros(rows.shape[-1]), vision_aspect_ratio=aspect,
            )  # fmt: skip
            out.append(packed[0])
        return out
