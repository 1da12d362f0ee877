"""Gemma 3: SigLIP tower (no [CLS]) average-pooled to a square token grid, Gemma 3 LM.

Image tokens attend to each other bidirectionally (``token_type_ids``); the pruned
sequence carries its own ``token_type_ids`` so the kept image tokens keep that pattern.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from vissparse.adapters.base import FamilySpec, TokenGrid, VLMAdapter
from vissparse.adapters.vision_signals import encoder_layers, layer_index, siglip_compute

GEMMA3 = FamilySpec(
    name="gemma3",
    model_types=("gemma3",),
    positions="linear",
    feature_inputs=("pixel_values",),
    placeholders=("<start_of_image>", "<image_soft_token>", "<end_of_image>"),
    image_newline=False,
    processor_class="Gemma3Processor",
    image_processor_class="Gemma3ImageProcessorPil",
    layout="base_tile",
    nested_images=True,
    token_types=True,
)


class Gemma3Adapter(VLMAdapter):
    """One square grid of pooled patches per image; attention received from SigLIP."""

    def _sides(self) -> tuple[int, int]:
        """``(patches per side, tokens per side)``."""
        vc = self.model.config.vision_config
        patches = int(vc.image_size) // int(vc.patch_size)
        return patches, math.isqrt(int(self.model.config.mm_tokens_per_image))

    @contextmanager
    def generating(self) -> Iterator[None]:
        """Let ``generate`` take ``inputs_embeds``.

        Gemma 3's ``prepare_inputs_for_generation`` forwards ``inputs_embeds`` to the
        shared implementation through ``**kwargs``, but ``generate`` refuses embeddings
        unless that method names the argument: for the call, the instance gets a wrapper
        that names it and does nothing else.
        """
        model = self.model
        inner = model.prepare_inputs_for_generation

        def named(input_ids: Any, inputs_embeds: Any = None, **kwargs: Any) -> Any:
            return inner(input_ids, inputs_embeds=inputs_embeds, **kwargs)

        model.prepare_inputs_for_generation = named
        try:
            yield
        finally:
            del model.prepare_inputs_for_generation

    def token_grid(self, inputs: dict[str, Any], image_index: int) -> TokenGrid:
        """The ``t x t`` grid of pooled tokens over the image squashed to a square."""
        n_images = inputs["pixel_values"].shape[0]
        if not 0 <= image_index < n_images:
            raise IndexError(f"image_index {image_index} out of range: {n_images} images")
        _, side = self._sides()
        return TokenGrid(rows=side, cols=side)

    def grid_picture(self, image: Image.Image, image_processor: Any) -> Image.Image:
        """The processor resizes the whole image to a square, ignoring its aspect ratio."""
        side = max(image.size)
        return image.resize((side, side), Image.Resampling.BICUBIC)

    def vision_attention(self, layer: int) -> tuple[Any, Any]:
        """SigLIP's ``self_attn`` at ``layer``: the attention each patch receives."""
        layers = encoder_layers(self.model.model.vision_tower)
        return layers[layer_index(layer, len(layers))].self_attn, siglip_compute

    def projector(self) -> Any:
        """The projector (average pooling, norm, projection): its input is SigLIP's output."""
        return self.model.model.multi_modal_projector

    def align_rows(
        self, inputs: dict[str, Any], values: Tensor, encoder_rows: bool
    ) -> list[Tensor]:
        """Per-patch ``[T, S, d]`` values averaged over each token's pooling window."""
        patches, side = self._sides()
        kernel = patches // side
        t, _, d = values.shape
        grid = values.float().transpose(1, 2).reshape(t, d, patches, patches)
        pooled = torch.nn.functional.avg_pool2d(grid, kernel_size=kernel, stride=kernel)
        return list(pooled.flatten(2).transpose(1, 2))
