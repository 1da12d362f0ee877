"""Qwen3.5 (and Qwen3.5-MoE): natively multimodal, a hybrid linear-attention LM.

The vision side is Qwen3-VL's ViT without DeepStack, read exactly as Qwen2-VL's. Three
of every four language-model layers are Gated DeltaNet (linear attention): every token
of the sequence updates a recurrent state that all later tokens read. A token masked out
of attention still enters that state (as zeros it still decays it and moves the
convolution window), so ``mode="mask"`` is not the same model as dropping the token:
it is refused, and drop mode is tested against a direct run on the pruned embeddings.
"""

from __future__ import annotations

from dataclasses import replace

from vissparse.adapters.qwen2_vl import QWEN2_VL

QWEN3_5 = replace(
    QWEN2_VL,
    name="qwen3_5",
    model_types=("qwen3_5", "qwen3_5_moe"),
    processor_class="Qwen3VLProcessor",
)
