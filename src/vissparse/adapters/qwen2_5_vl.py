"""Qwen2.5-VL: the Qwen2-VL adapter with its own model type and processor."""

from __future__ import annotations

from dataclasses import replace

from vissparse.adapters.qwen2_vl import QWEN2_VL

# Qwen2.5-VL differs in its vision encoder (window attention), not in what VisSparse reads.
QWEN2_5_VL = replace(
    QWEN2_VL,
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    processor_class="Qwen2_5_VLProcessor",
)
