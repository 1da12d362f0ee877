"""LLaVA-1.5 and LLaVA-NeXT: CLIP vision tower, MLP projector, Llama-style LM, 1-D RoPE."""

from __future__ import annotations

from dataclasses import replace

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

# LLaVA-NeXT packs each image as [base tile | anyres grid rows, each ending in a learned
# newline token]; the token count varies with the image's size and aspect ratio.
LLAVA_NEXT = replace(
    LLAVA,
    name="llava_next",
    model_types=("llava_next",),
    feature_inputs=("pixel_values", "image_sizes"),
    image_newline=True,
    processor_class="LlavaNextProcessor",
    image_processor_class="LlavaNextImageProcessorPil",
)


class LlavaAdapter(VLMAdapter):
    """Both LLaVA generations: the base adapter's defaults fit them as they are."""
