"""The attention that chosen text tokens pay to every key, read from a layer's q and k.

FastV-style methods rank image tokens by the attention the text pays them at the layer
before pruning. Peers switch the whole model to eager attention and ask for
``output_attentions``; here one attention module gets a registered attention function
that computes ``softmax(q_rows k^T)`` for the few query rows needed, then hands the
call on to the model's own implementation (SDPA, eager, ...), so every other layer and
this layer's output are exactly what they were.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

NAME = "vissparse_text_attention"


def attention_rows(
    query: Tensor,
    key: Tensor,
    rows: Tensor,
    row_valid: Tensor,
    key_valid: Tensor,
    scaling: float,
) -> Tensor:
    """``[B, Lk]`` float32: the attention of the chosen query rows to each key.

    ``query`` ``[B, H, Lq, d]`` and ``key`` ``[B, H_kv, Lk, d]`` are the layer's rotated
    projections (grouped KV heads are shared by ``H / H_kv`` query heads). ``rows``
    ``[B, R]`` picks query positions, ``row_valid`` ``[B, R]`` which of them count;
    ``key_valid`` ``[B, Lk]`` the keys that exist (not padding, not masked). Each row is
    causal (a query sees keys up to its own position, the last ``Lq`` keys being the
    queries' own). The softmax is averaged over heads, then over the valid rows.

    Example:
        >>> q = torch.zeros(1, 2, 3, 4); k = torch.zeros(1, 1, 3, 4)
        >>> ones = torch.ones(1, 3, dtype=torch.bool)
        >>> attention_rows(q, k, torch.tensor([[2]]), ones[:, :1], ones, 0.5).tolist()
        [[0.3333333432674408, 0.3333333432674408, 0.3333333432674408]]
    """
    b, heads, lq, d = query.shape
    lk = key.shape[2]
    index = rows.view(b, 1, -1, 1).expand(b, heads, rows.shape[1], d)
    q = query.gather(2, index).float()
    k = key.float().repeat_interleave(heads // key.shape[1], dim=1)
    logits = torch.einsum("bhrd,bhkd->bhrk", q, k) * scaling
    position = rows + (lk - lq)  # the key index of each query row
    allowed = key_valid[:, None, :] & (torch.arange(lk, device=key.device) <= position[..., None])
    allowed |= ~row_valid[..., None]  # padding rows: finite, then weighted 0
    logits = logits.masked_fill(~allowed[:, None], float("-inf"))
    weights = torch.softmax(logits, dim=-1).mean(dim=1)  # [B, R, Lk]
    row_weight = row_valid.float()
    total = (weights * row_weight[..., None]).sum(dim=1)
    return total / row_weight.sum(dim=1, keepdim=True).clamp(min=1)


@dataclass
class AttentionRequest:
    """Which rows to read at one prefill, and (once read) the result."""

    rows: Tensor
    row_valid: Tensor
    key_valid: Tensor
    result: Tensor | None = None


@dataclass
class _Slot:
    delegate: Callable[..., Any]
    request: AttentionRequest | None = None


_SLOTS: dict[int, _Slot] = {}


def _scoring_attention(module: Any, query: Tensor, key: Tensor, value: Tensor,
                       attention_mask: Tensor | None, **kwargs: Any) -> Any:  # fmt: skip
    slot = _SLOTS[id(module)]
    request = slot.request
    if request is not None and request.result is None and query.shape[2] > 1:
        scaling = kwargs.get("scaling")
        scaling = query.shape[-1] ** -0.5 if scaling is None else float(scaling)
        # the prefill's own keys: a static cache also hands over its unwritten slots
        keys = key[:, :, : request.key_valid.shape[1]]
        request.result = attention_rows(
            query, keys, request.rows, request.row_valid, request.key_valid, scaling
        )
    return slot.delegate(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(NAME, _scoring_attention)


def _delegate(module: Any, implementation: str) -> Callable[..., Any]:
    if implementation in ALL_ATTENTION_FUNCTIONS:
        return ALL_ATTENTION_FUNCTIONS[implementation]
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if implementation == "eager" and eager is not None:
        return eager
    raise ValueError(
        f"attention implementation {implementation!r} of {type(module).__name__} cannot be "
        "read for text-attention scores; load the model with attn_implementation='sdpa'"
    )


@contextmanager
def text_attention_slot(module: Any) -> Iterator[_Slot]:
    """While open, ``module`` (one attention layer) can be asked for row attention.

    The module gets its own copy of its config that names the scoring function; on exit
    the shared config is back. Set ``slot.request`` before a prefill; the function fills
    ``request.result`` and otherwise behaves as the model's attention.
    """
    config = module.config
    slot = _Slot(_delegate(module, config._attn_implementation))
    own = copy.copy(config)
    own._attn_implementation_internal = NAME
    _SLOTS[id(module)] = slot
    module.config = own
    try:
        yield slot
    finally:
        module.config = config
        _SLOTS.pop(id(module), None)
