"""FLOPs of a prefill: counted by torch's FlopCounterMode, and by the analytic formula.

Analytic per-layer counts (multiply-add = 2 FLOPs), ``n`` tokens, width ``d``:

- language model layer: ``2n(d*d_q + 2*d*d_kv + d_q*d) + 4n^2*d_q + 6n*d*m`` (attention
  projections with grouped KV, full n x n attention as SDPA computes it, SwiGLU MLP);
  plus the LM head for the one position whose logits are kept;
- vision layer (CLIP / Qwen ViT): ``8n*d^2 + 4n^2*d + 4n*d*m`` (two-matrix MLP);
- patch embedding, LLaVA's two-layer projector, Qwen's 2x2 patch merger (Qwen3-VL: one
  more merger per DeepStack level; adding its features to the hidden states is free).

Pruning after the vision encoder shrinks only the language model's ``n``, so the bound
on prefill speedup is ``flops(baseline) / flops(pruned)``. Pruning inside the language
model (``stage="llm"``) gives each layer its own ``n``: the count is per layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

# every fused SDPA kernel torch may pick (CPU flash, CUDA flash, memory-efficient, cuDNN)
_SDPA_OPS = (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
)


def sdpa_flops(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
) -> int:
    """FLOPs of one SDPA call, grouped-query attention included.

    With ``enable_gqa`` (transformers passes it on CUDA) keys and values hold fewer heads
    than the queries; each key head serves a group of query heads, so the product costs
    what it would with the keys repeated. torch's own formula rejects those shapes.

    Example:
        >>> sdpa_flops((1, 4, 3, 8), (1, 2, 3, 8), (1, 2, 3, 8))
        1152
    """
    heads = query_shape[1]
    key = (*key_shape[:1], heads, *key_shape[2:])
    value = (*value_shape[:1], heads, *value_shape[2:])
    return int(sdpa_flop_count(query_shape, key, value))


# every SDPA kernel this torch build has, counted by sdpa_flops
_SDPA_FORMULAS = {
    getattr(torch.ops.aten, name): sdpa_flops for name in _SDPA_OPS if hasattr(torch.ops.aten, name)
}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` as torch's ``FlopCounterMode`` counts them.

    Every SDPA kernel is counted by :func:`sdpa_flops`: torch leaves the CPU flash kernel
    at 0 and rejects grouped-query shapes, so CPU and GPU counts agree.

    Example:
        >>> import torch
        >>> count_flops(lambda: torch.ones(2, 3) @ torch.ones(3, 4))
        48
    """
    counter = FlopCounterMode(display=False, custom_mapping=_SDPA_FORMULAS)
    with counter:
        fn()
    return int(counter.get_total_flops())


def lm_flops(text_config: Any, n: int | Sequence[int], layers: int | None = None) -> int:
    """Analytic FLOPs of a decoder-only LM prefill over ``n`` tokens (logits of one).

    ``n`` may be one length per layer (pruning inside the language model).

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
    layers = text_config.num_hidden_layers if layers is None else layers
    lengths = [n] * layers if isinstance(n, int) else list(n)
    if len(lengths) != layers:
        raise ValueError(f"`n` holds {len(lengths)} layer lengths for {layers} layers")
    types = getattr(text_config, "layer_types", None) or ["full_attention"] * layers
    gated = str(getattr(text_config, "model_type", "")).startswith("qwen3_5")  # q and its gate
    d_q_proj = 2 * d_q if gated else d_q
    total = 0
    for k, kind in zip(lengths, types, strict=False):
        if kind == "linear_attention":
            total += gated_deltanet_flops(text_config, k)
        else:
            total += 2 * k * (d * d_q_proj + 2 * d * d_kv + d_q * d) + 4 * k * k * d_q
        total += 6 * k * d * m
    return total + 2 * d * text_config.vocab_size


def gated_deltanet_flops(text_config: Any, n: int, chunk: int = 64) -> int:
    """Analytic FLOPs of one Gated DeltaNet (Qwen3.5 linear attention) layer's mixer.

    Projections, the depthwise causal convolution, and the matrix products of the
    chunked delta rule (chunks of ``chunk`` tokens, the sequence padded to a multiple):
    linear in ``n``. The triangular solves inside each chunk are left out, as torch's
    counter leaves them out.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> cfg = NS(hidden_size=8, linear_num_key_heads=1, linear_num_value_heads=2,
        ...          linear_key_head_dim=2, linear_value_head_dim=2, linear_conv_kernel_dim=4)
        >>> f = lambda n: gated_deltanet_flops(cfg, n)
        >>> f(128) - f(64) == f(64) - f(0)  # linear in n, a whole chunk at a time
        True
    """
    d = text_config.hidden_size
    hv = text_config.linear_num_value_heads
    dk, dv = text_config.linear_key_head_dim, text_config.linear_value_head_dim
    key_dim, value_dim = text_config.linear_num_key_heads * dk, hv * dv
    conv_dim, kernel = 2 * key_dim + value_dim, text_config.linear_conv_kernel_dim
    projections = 2 * n * d * (conv_dim + value_dim + 2 * hv) + 2 * n * value_dim * d
    conv = 2 * conv_dim * (n + kernel - 1) * kernel
    chunks = -(-n // chunk)
    per_chunk = 2 * 2 * chunk * chunk * dk + 3 * 2 * chunk * dk * dv + 2 * chunk * chunk * dv
    return projections + conv + hv * chunks * per_chunk


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
    if config.model_type == "gemma3":  # SigLIP over the whole image, pooled, projected
        d, m = vc.hidden_size, vc.intermediate_size
        patch = 2 * n_patches * 3 * vc.patch_size**2 * d
        tokens = int(config.mm_tokens_per_image)
        projector = 2 * tokens * d * config.text_config.hidden_size
        return patch + vc.num_hidden_layers * vit_layer_flops(n_patches, d, m) + projector
    if config.model_type == "llava_onevision":  # SigLIP, no [CLS]; attention per tile
        d, m = vc.hidden_size, vc.intermediate_size
        per_tile = (vc.image_size // vc.patch_size) ** 2
        tiles = n_patches // per_tile
        patch = 2 * n_patches * 3 * vc.patch_size**2 * d
        text_d = config.text_config.hidden_size
        projector = 2 * n_patches * (d * text_d + text_d * text_d)
        layers = vc.num_hidden_layers * tiles * vit_layer_flops(per_tile, d, m)
        return patch + layers + projector
    if config.model_type == "qwen2_vl":
        e = vc.embed_dim
        m = int(e * vc.mlp_ratio)
        patch = 2 * n_patches * vc.in_channels * vc.temporal_patch_size * vc.patch_size**2 * e
        merged = n_patches // vc.spatial_merge_size**2
        k = e * vc.spatial_merge_size**2
        merger = 2 * merged * (k * k + k * vc.hidden_size)
        return patch + vc.depth * vit_layer_flops(n_patches, e, m) + merger
    if config.model_type in ("qwen3_vl", "qwen3_5"):  # ViT, merger (+1 per DeepStack level)
        d, m = vc.hidden_size, vc.intermediate_size
        patch = 2 * n_patches * vc.in_channels * vc.temporal_patch_size * vc.patch_size**2 * d
        merged = n_patches // vc.spatial_merge_size**2
        k = d * vc.spatial_merge_size**2
        n_mergers = 1 + len(getattr(vc, "deepstack_visual_indexes", None) or [])
        mergers = n_mergers * 2 * merged * (k * k + k * vc.out_hidden_size)
        return patch + vc.depth * vit_layer_flops(n_patches, d, m) + mergers
    if config.model_type == "internvl":  # InternViT per tile ([CLS]), pixel shuffle, MLP
        d, m = vc.hidden_size, vc.intermediate_size
        side, patch_size = _side(vc.image_size), _side(vc.patch_size)
        per_tile = (side // patch_size) ** 2
        patch = 2 * n_patches * 3 * patch_size**2 * d
        layers = (
            vc.num_hidden_layers * (n_patches // per_tile) * vit_layer_flops(per_tile + 1, d, m)
        )
        fold = round(1 / float(config.downsample_ratio)) ** 2
        text_d = config.text_config.hidden_size
        projector = 2 * (n_patches // fold) * (fold * d * text_d + text_d * text_d)
        return patch + layers + projector
    raise ValueError(f"no analytic FLOP formula for model type {config.model_type!r}")


def _side(value: Any) -> int:
    """An ``image_size`` / ``patch_size`` given as one int or ``[h, w]`` (square)."""
    return int(value) if isinstance(value, int) else int(value[0])


def analytic_prefill_flops(config: Any, n_sequence: int | Sequence[int], n_patches: int) -> int:
    """Vision encoder + projector for ``n_patches`` + LM prefill over ``n_sequence`` tokens.

    ``n_sequence`` may be one length per language-model layer.
    """
    return vision_flops(config, n_patches) + lm_flops(config.text_config, n_sequence)


def equal_flops_keep(config: Any, n_sequence: int, n_image: int, n_patches: int,
                     flops: float) -> float:  # fmt: skip
    """The input-stage keep ratio whose analytic prefill FLOPs equal ``flops``.

    Sets a layer-wise setting against input-stage pruning: the fraction of the
    ``n_image`` image tokens that, kept before the language model, costs the same.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> cfg = NS(hidden_size=8, num_attention_heads=2, num_key_value_heads=1,
        ...          intermediate_size=16, num_hidden_layers=2, vocab_size=10, head_dim=None)
        >>> full = lm_flops(cfg, 20)
        >>> lm_flops(cfg, [20, 12]) < full
        True
    """
    text = n_sequence - n_image

    def cost(kept: int) -> int:
        return analytic_prefill_flops(config, text + kept, n_patches)

    lo, hi = 0, n_image
    while lo < hi:  # the smallest count that costs at least `flops`
        mid = (lo + hi) // 2
        if cost(mid) < flops:
            lo = mid + 1
        else:
            hi = mid
    if lo > 0 and abs(cost(lo - 1) - flops) < abs(cost(lo) - flops):
        lo -= 1
    return lo / max(1, n_image)
