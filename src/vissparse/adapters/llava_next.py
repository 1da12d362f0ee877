"""LLaVA-NeXT: LLaVA with anyres tiles; the LLaVA adapter with its own facts."""

from __future__ import annotations

from dataclasses import replace

from vissparse.adapters.llava import LLAVA

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
    layout="base_tile",
)
