"""LLaVA-1.5: CLIP vision tower, MLP projector, Llama-style LM, 1-D RoPE."""

from __future__ import annotations

from vissparse.adapters.base import FamilySpec, VLMAdapter

LLAVA = FamilySpec(
    name="llava",
    model_types=("llava",),
    positions="linear",
    feature_inputs=("pixel_values",),
    placeholders=("<image>",),
    image_newline=False,
    processor_class="LlavaProcessor",
    image_processor_class="CLIPImageProcessorPil",
)


class LlavaAdapter(VLMAdapter):
    """Both LLaVA generations: the base adapter's defaults fit them as they are."""
