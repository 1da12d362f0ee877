"""FLOPs of a prefill: counted by torch's FlopCounterMode, and by the analytic formula.

Analytic per-layer counts (multiply-add = 2 FLOPs), ``n`` tokens, width ``d``:

- language model layer: ``2n(d*d_q + 2*d*d_kv + d_q*d) + 4n^2*d_q + 6n*d*m`` (attention
  projections with grouped KV, full n x n attention as SDPA computes it, SwiGLU MLP);
  plus the LM head for the one position whose logits are kept;
- vision layer (CLIP / Qwen ViT): ``8n*d^2 + 4n^2*d + 4n*d*m`` (two-matrix MLP);
- patch embedding, LLaVA's two-layer projector, Qwen's 2x2 patch merger.

Pruning after the vision encoder shrinks only the language model's ``n``, so the bound
on prefill speedup is ``flops(baseline) / flops(pruned)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count


def _register_cpu_sdpa() -> None:
    """Count the CPU flash-attention kernel, which FlopCounterMode otherwise counts as 0."""
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu

    def formula(
        query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
    ) -> int:
        return int(sdpa_flop_count(query_shape, key_shape, value_shape))

    try:
        register_flop_formula(op)(formula)
    except RuntimeError:  # already registered (by torch or an earlier import)
        pass


_register_cpu_sdpa()


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` as torch's ``FlopCounterMode`` counts them.

    SDPA's CPU flash kernel is counted too (torch leaves it at 0), so CPU and GPU counts
    agree.

    Example:
        >>> import torch
        >>> count_flops(lambda: torch.ones(2, 3) @ torch.ones(3, 4))
        48
    """
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def lm_flops(text_config: Any, n: int, layers: int | None = None) -> int:
    """Analytic FLOPs of a decoder-only LM prefill over ``n`` tokens (logits of one).

    Example:
        >>> from types import SimpleNamespace as NS
        >>> cfg = NS(hidden_size=8, num_attention_heads=2, num_key_value_heads=1,
        ...          intermediate_size=16, num_hidden_layers=1, vocab_size=10, head_dim=None)
        >>> lm_flops(cfg, 4)
        5280
    """
    d = text_config.hidden_size
    heads = text_config.num_attention_heads
    head_dim = getattr(text_config, "head_dim", None) or d // heads
    d_q = heads * head_dim
    d_kv = (getattr(text_config, "num_key_value_heads", None) or heads) * head_dim
    m = text_config.intermediate_size
    per_layer = 2 * n * (d * d_q + 2 * d * d_kv + d_q * d) + 4 * n * n * d_q + 6 * n * d * m
    layers = text_config.num_hidden_layers if layers is None else layers
    return layers * per_layer + 2 * d * text_config.vocab_size


def vit_layer_flops(n: int, d: int, m: int) -> int:
    """Analytic FLOPs of one pre-norm ViT layer over ``n`` tokens.

    Example:
        >>> vit_layer_flops(2, 4, 8)
        576
    """
    return 8 * n * d * d + 4 * n * n * d + 4 * n * d * m


def vision_flops(config: Any, n_patches: int) -> int:
    """Analytic FLOPs of the vision encoder and projector/merger for one image."""
    vc = config.vision_config
    if config.model_type == "llava":
        d, m = vc.hidden_size, vc.intermediate_size
        n = n_patches + 1  # CLS
        patch = 2 * n_patches * 3 * vc.patch_size**2 * d
        text_d = config.text_config.hidden_size
        projector = 2 * n_patches * (d * text_d + text_d * text_d)
        return patch + vc.num_hidden_layers * vit_layer_flops(n, d, m) + projector
    if config.model_type == "qwen2_vl":
        e = vc.embed_dim
        m = int(e * vc.mlp_ratio)
        patch = 2 * n_patches * vc.in_channels * vc.temporal_patch_size * vc.patch_size**2 * e
        merged = n_patches // vc.spatial_merge_size**2
        k = e * vc.spatial_merge_size**2
        merger = 2 * merged * (k * k + k * vc.hidden_size)
        return patch + vc.depth * vit_layer_flops(n_patches, e, m) + merger
    raise ValueError(f"no analytic FLOP formula for model type {config.model_type!r}")


def analytic_prefill_flops(config: Any, n_sequence: int, n_patches: int) -> int:
    """Vision encoder + projector for ``n_patches`` + LM prefill over ``n_sequence`` tokens."""
    return vision_flops(config, n_patches) + lm_flops(config.text_config, n_sequence)
