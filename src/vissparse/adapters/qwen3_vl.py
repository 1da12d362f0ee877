"""Qwen3-VL (and Qwen3-VL-MoE): the Qwen2-VL geometry plus DeepStack features.

Qwen3-VL's vision encoder also returns features from intermediate layers (DeepStack),
which the language model adds to the hidden states after its first layers, at the image
tokens. VisSparse carries them as :attr:`Embedded.layer_additions` (dense ``[B, L, D]``,
zero on text), so they are pruned with the same keep mask as the image tokens: a kept
token still receives its features, a dropped one leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from vissparse.adapters.base import Embedded
from vissparse.adapters.qwen2_vl import QWEN2_VL, QwenVLAdapter

QWEN3_VL = replace(
    QWEN2_VL,
    name="qwen3_vl",
    model_types=("qwen3_vl", "qwen3_vl_moe"),
    processor_class="Qwen3VLProcessor",
)


class Qwen3VLAdapter(QwenVLAdapter):
    """Qwen2-VL's reading of the model, with the DeepStack features as layer additions.

    Example:
        >>> from vissparse import PruningConfig
        >>> from vissparse.hf.pipeline import HFPipeline
        >>> from vissparse.testing import random_image, tiny_model
        >>> pipe = HFPipeline(*tiny_model("qwen3_vl"), PruningConfig(keep_ratio=0.25))
        >>> emb = pipe.adapter.embed(pipe.prepare_inputs(random_image(), "Hi?"))
        >>> len(emb.layer_additions), emb.layer_additions[0].shape == emb.inputs_embeds.shape
        (2, True)
    """

    def deepstack_layers(self) -> int:
        """How many of the language model's first layers receive DeepStack features."""
        return len(self.model.config.vision_config.deepstack_visual_indexes)

    @torch.inference_mode()
    def embed(self, inputs: dict[str, Any]) -> Embedded:
        """Embed the batch; each DeepStack level becomes one dense layer addition."""
        output = self.model.model.get_image_features(
            inputs["pixel_values"], inputs["image_grid_thw"]
        )
        emb = self.scatter_features(inputs, list(output.pooler_output))
        image_mask = (inputs["input_ids"] == self.image_token_id).unsqueeze(-1)
        embeds = emb.inputs_embeds
        for level in output.deepstack_features:  # split per image since transformers 5.2x
            flat = level if isinstance(level, torch.Tensor) else torch.cat(level)
            flat = flat.to(embeds.device, embeds.dtype)
            dense = torch.zeros_like(embeds).masked_scatter(image_mask.expand_as(embeds), flat)
            emb.layer_additions.append(dense)
        return emb
