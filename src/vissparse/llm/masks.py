"""Sequence bookkeeping for pruning inside the language model: pure tensor code.

After layer K drops tokens, the layers from K on see a shorter, re-packed sequence while
the layers below K keep the full one. These helpers pack the kept positions, gather
per-token tensors (hidden states, rotary cos/sin) and build the 4-D attention masks the
shorter layers need in prefill and in decoding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def left_pack(keep: Tensor) -> tuple[Tensor, Tensor]:
    """The positions where ``keep`` is true, per row, packed to the right (left padding).

    Returns ``index`` ``[B, L']`` long (padding points at 0) and ``valid`` ``[B, L']``
    bool, with ``L'`` the largest count of kept positions in a row. The last kept token
    of every row lands in the last column, as ``generate`` expects.

    Example:
        >>> index, valid = left_pack(torch.tensor([[1, 0, 1, 1], [0, 0, 1, 1]]).bool())
        >>> index.tolist(), valid.tolist()
        ([[0, 2, 3], [0, 2, 3]], [[True, True, True], [False, True, True]])
    """
    counts = keep.sum(dim=1)
    length = int(counts.max()) if keep.numel() else 0
    b = keep.shape[0]
    index = torch.zeros(b, length, dtype=torch.long, device=keep.device)
    valid = torch.zeros(b, length, dtype=torch.bool, device=keep.device)
    for row in range(b):
        kept = keep[row].nonzero().flatten()
        index[row, length - kept.numel() :] = kept
        valid[row, length - kept.numel() :] = True
    return index, valid


def gather_tokens(values: Tensor, index: Tensor) -> Tensor:
    """``values[..., b, index[b, j], :]``: gather along the sequence axis (-2) per row.

    ``values`` is ``[..., B, L, d]`` (or ``[..., 1, L, d]``, broadcast to every row), as
    hidden states ``[B, L, D]`` and rotary tables ``[B, L, d]`` / ``[3, B, L, d]`` are.

    Example:
        >>> v = torch.arange(6.0).view(1, 3, 2)
        >>> gather_tokens(v, torch.tensor([[2, 0], [1, 1]])).tolist()
        [[[4.0, 5.0], [0.0, 1.0]], [[2.0, 3.0], [2.0, 3.0]]]
    """
    b, length = index.shape
    lead = values.shape[:-3]
    values = values.expand(*lead, b, values.shape[-2], values.shape[-1])
    idx = index.view(*([1] * len(lead)), b, length, 1).expand(*lead, b, length, values.shape[-1])
    return values.gather(-2, idx)


def gather_positions(values: Tensor, index: Tensor) -> Tensor:
    """``values[..., b, index[b, j]]`` for per-token ids ``[..., B, L]`` (or ``[..., 1, L]``).

    Example:
        >>> gather_positions(torch.tensor([[10, 11, 12]]), torch.tensor([[0, 2]])).tolist()
        [[10, 12]]
    """
    b, length = index.shape
    lead = values.shape[:-2]
    values = values.expand(*lead, b, values.shape[-1])
    return values.gather(-1, index.view(*([1] * len(lead)), b, length).expand(*lead, b, length))


def inverse_index(index: Tensor, valid: Tensor, length: int) -> Tensor:
    """``[B, length]`` long: for each original position, its column in ``index``, else -1.

    Example:
        >>> inverse_index(torch.tensor([[0, 2]]), torch.tensor([[True, True]]), 3).tolist()
        [[0, -1, 1]]
    """
    out = torch.full((index.shape[0], length), -1, dtype=torch.long, device=index.device)
    cols = torch.arange(index.shape[1], device=index.device).expand_as(index)
    rows = torch.arange(index.shape[0], device=index.device)[:, None].expand_as(index)
    out[rows[valid], index[valid]] = cols[valid]
    return out


def _as_mask(allowed: Tensor, dtype: torch.dtype | None) -> Tensor:
    """Bool masks as they are (SDPA); an additive float mask for eager attention."""
    if dtype is None:
        return allowed
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def prefill_mask(valid: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``[B, 1, L, L]`` causal mask over the keys ``valid`` ``[B, L]`` marks.

    Every query may also see itself, so padding rows never attend to nothing (a fully
    masked row would give NaN that spreads through the value sums). ``dtype`` ``None``
    gives a bool mask (``True`` = attend), a float dtype an additive mask.

    Example:
        >>> prefill_mask(torch.tensor([[False, True, True]]))[0, 0].int().tolist()
        [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    """
    length = valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)
    allowed = (causal & valid[:, None, :]) | eye
    return _as_mask(allowed[:, None], dtype)


def decode_mask(
    valid: Tensor, n_past: int, n_query: int, dtype: torch.dtype | None = None
) -> Tensor:
    """``[B, 1, q, L + n_past + q]``: decoding ``q`` new tokens after ``n_past`` earlier ones.

    ``valid`` ``[B, L]`` marks the prompt keys this layer's cache holds; every generated
    token is a key, causally within the new block.

    Example:
        >>> decode_mask(torch.tensor([[False, True]]), 1, 1)[0, 0].int().tolist()
        [[0, 1, 1, 1]]
    """
    b = valid.shape[0]
    new = torch.ones(n_query, n_past + n_query, dtype=torch.bool, device=valid.device)
    new[:, n_past:] = torch.ones(n_query, n_query, dtype=torch.bool, device=valid.device).tril()
    prompt = valid[:, None, :].expand(b, n_query, valid.shape[1])
    allowed = torch.cat([prompt, new.expand(b, n_query, -1)], dim=-1)
    return _as_mask(allowed[:, None], dtype)


def widen_keys(mask: Tensor, n_keys: int) -> Tensor:
    """``mask`` ``[B, 1, q, k]`` over ``n_keys >= k`` keys, the added ones masked out.

    A static KV cache hands attention all its ``max_cache_len`` slots, the ones not yet
    written included: they follow the written ones and must not be attended to.

    Example:
        >>> widen_keys(torch.ones(1, 1, 1, 2, dtype=torch.bool), 4)[0, 0].int().tolist()
        [[1, 1, 0, 0]]
        >>> widen_keys(torch.zeros(1, 1, 1, 1), 2)[0, 0].tolist() == [[0.0, torch.finfo().min]]
        True
    """
    extra = n_keys - mask.shape[-1]
    if extra <= 0:
        return mask
    fill = False if mask.dtype == torch.bool else torch.finfo(mask.dtype).min
    return torch.cat([mask, mask.new_full((*mask.shape[:-1], extra), fill)], dim=-1)
