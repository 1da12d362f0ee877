"""Attention signals of the vision encoder, recomputed for one layer from a hook.

The model keeps its attention implementation (SDPA, flash) everywhere: a forward
pre-hook on one vision attention module receives that layer's (normalised) hidden states
and recomputes ``q . k`` for the rows a method needs, here:

- CLIP towers (LLaVA) and InternViT (InternVL): the attention of the [CLS] token to
  every token, averaged over heads, and the keys averaged over heads (VisionZip's merge
  metric);
- ViTs without [CLS] (Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision's SigLIP): the attention
  each patch *receives*, averaged over heads and over the queries of its attention block
  (the tile, the image, or the window in Qwen2.5-VL's windowed layers), and the
  head-averaged keys.

The adapters then align the per-patch values with the image tokens (dropping [CLS],
pooling Qwen's 2x2 merge units, undoing Qwen2.5-VL's window order, packing LLaVA-NeXT's
tiles like its features). The hook's own time is recorded, so methods report it.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class RawSignals:
    """What the hook saw, in the encoder's own row order, and how long it took."""

    attention: list[Tensor] = field(default_factory=list)
    keys: list[Tensor] = field(default_factory=list)
    ms: float = 0.0


@dataclass
class VisionSignals:
    """Per-image signals aligned with each image's tokens (batch order).

    Attributes:
        attention: one ``[n_i]`` float32 tensor per image ([CLS] attention, or attention
            received), 0 on tokens with no encoder patch (LLaVA-NeXT's newlines); ``None``
            when not asked for.
        keys: one ``[n_i, d]`` float32 tensor per image: head-averaged keys (or ``None``).
        layer: the vision layer they come from.
        ms: time spent computing and aligning them, in milliseconds.
        features: one ``[n_i, D]`` tensor per image: the projector's input (the
            encoder's features before the projector; Qwen: the mean over each merge
            unit), when asked for.
    """

    attention: list[Tensor] | None
    keys: list[Tensor] | None
    layer: int
    ms: float
    features: list[Tensor] | None = None


def clip_cls_attention(module: Any, hidden: Tensor) -> tuple[Tensor, Tensor]:
    """[CLS] attention ``[T, S]`` (mean over heads) and keys ``[T, S, d]`` of a CLIP layer.

    ``hidden`` is the attention's input ``[T, S, D]`` (T tiles, S = 1 + patches). Query
    and key norms, where the layer has them (InternViT's ``q_norm`` / ``k_norm``), apply.

    Example:
        >>> from types import SimpleNamespace
        >>> lin = torch.nn.Linear(4, 4, bias=False)
        >>> _ = torch.nn.init.eye_(lin.weight)
        >>> m = SimpleNamespace(q_proj=lin, k_proj=lin, num_heads=2, head_dim=2, scale=1.0)
        >>> att, keys = clip_cls_attention(m, torch.eye(4)[None, :3])
        >>> att.shape, keys.shape, round(float(att.sum()), 4)
        (torch.Size([1, 3]), torch.Size([1, 3, 2]), 1.0)
    """
    t, s, _ = hidden.shape
    heads, dim = int(module.num_heads), int(module.head_dim)
    q, k = module.q_proj(hidden[:, :1]), module.k_proj(hidden)
    if getattr(module, "q_norm", None) is not None:
        q, k = module.q_norm(q), module.k_norm(k)
    q = q.view(t, 1, heads, dim).transpose(1, 2).float()
    k = k.view(t, s, heads, dim).transpose(1, 2).float()
    att = torch.softmax((q @ k.transpose(-1, -2)) * float(module.scale), dim=-1)
    return att.mean(dim=1)[:, 0], k.mean(dim=1)


def received_attention(q: Tensor, k: Tensor, cu_seqlens: Tensor, scale: float) -> Tensor:
    """``[seq]`` attention each token receives, mean over heads and queries, per block.

    ``q`` and ``k`` are ``[seq, heads, d]``; blocks are ``cu_seqlens`` spans, within which
    every token attends to every other (the Qwen vision encoder's images or windows).

    Example:
        >>> q = k = torch.zeros(4, 1, 2)
        >>> received_attention(q, k, torch.tensor([0, 1, 4]), 1.0) * 3
        tensor([3., 1., 1., 1.])
    """
    out = torch.zeros(q.shape[0], dtype=torch.float32, device=q.device)
    bounds = cu_seqlens.tolist()
    for start, end in itertools.pairwise(bounds):
        qs = q[start:end].transpose(0, 1).float()
        ks = k[start:end].transpose(0, 1).float()
        total = torch.zeros(end - start, device=q.device)
        for h in range(qs.shape[0]):  # one head at a time keeps memory at n x n
            total += torch.softmax((qs[h] @ ks[h].T) * scale, dim=-1).mean(dim=0)
        out[start:end] = total / qs.shape[0]
    return out


def qwen_received_attention(module: Any, args: tuple, kwargs: dict) -> tuple[Tensor, Tensor]:
    """Attention received ``[seq]`` and keys ``[seq, d]`` of a Qwen vision attention call."""
    hidden = args[0] if args else kwargs["hidden_states"]
    seq = hidden.shape[0]
    heads = int(module.num_heads)
    q, k, _ = module.qkv(hidden).reshape(seq, 3, heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = kwargs["position_embeddings"]
    rotate = sys.modules[type(module).__module__].apply_rotary_pos_emb_vision
    q, k = rotate(q, k, cos, sin)
    scale = float(getattr(module, "scaling", q.shape[-1] ** -0.5))
    return received_attention(q, k, kwargs["cu_seqlens"], scale), k.float().mean(dim=1)


@contextmanager
def capture(module: Any, compute: Any) -> Iterator[RawSignals]:
    """Record ``compute(module, args, kwargs) -> (attention, keys)`` on each call of ``module``.

    The hook only reads the call's inputs and never changes them, so the model's own
    output is unchanged; it is removed when the block exits.
    """
    raw = RawSignals()

    def hook(mod: Any, args: tuple, kwargs: dict) -> None:
        start = time.perf_counter()
        with torch.no_grad():
            attention, keys = compute(mod, args, kwargs)
        raw.attention.append(attention)
        raw.keys.append(keys)
        raw.ms += (time.perf_counter() - start) * 1e3

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield raw
    finally:
        handle.remove()


def clip_compute(module: Any, args: tuple, kwargs: dict) -> tuple[Tensor, Tensor]:
    """The hook body for CLIP attention modules."""
    hidden = args[0] if args else kwargs["hidden_states"]
    return clip_cls_attention(module, hidden)


def siglip_compute(module: Any, args: tuple, kwargs: dict) -> tuple[Tensor, Tensor]:
    """The hook body for SigLIP attention (no [CLS]): attention each patch receives.

    ``hidden`` is ``[T, S, D]`` (T tiles, S patches, all attending to all): returns the
    attention received ``[T, S]`` (mean over heads and queries) and keys ``[T, S, d]``.
    """
    hidden = args[0] if args else kwargs["hidden_states"]
    t, s, _ = hidden.shape
    heads, dim = int(module.num_heads), int(module.head_dim)
    q = module.q_proj(hidden).view(t, s, heads, dim).transpose(1, 2).float()
    k = module.k_proj(hidden).view(t, s, heads, dim).transpose(1, 2).float()
    received = torch.zeros(t, s, device=hidden.device)
    for h in range(heads):  # one head at a time keeps memory at S x S per tile
        received += torch.softmax((q[:, h] @ k[:, h].transpose(-1, -2)) * float(module.scale),
                                  dim=-1).mean(dim=1)  # fmt: skip
    return received / heads, k.mean(dim=1)


def encoder_layers(tower: Any) -> Any:
    """The layers of a CLIP or SigLIP vision tower (nested in ``vision_model`` before 5.2x)."""
    return getattr(tower, "vision_model", tower).encoder.layers


def layer_index(layer: int, n_layers: int) -> int:
    """A Python-style layer index checked against ``n_layers``.

    Example:
        >>> layer_index(-2, 24)
        22
    """
    index = layer + n_layers if layer < 0 else layer
    if not 0 <= index < n_layers:
        raise ValueError(f"`vision_layer` {layer} is out of range for {n_layers} vision layers")
    return index
