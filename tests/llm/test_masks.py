"""The sequence bookkeeping of in-LLM pruning: packing, gathers, masks."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vissparse.llm.masks import (
    decode_mask,
    gather_positions,
    gather_tokens,
    inverse_index,
    left_pack,
    prefill_mask,
)


def _rows(b: int, n: int) -> st.SearchStrategy[list[list[bool]]]:
    return st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=b, max_size=b)


keeps = st.integers(1, 4).flatmap(lambda b: st.integers(1, 9).flatmap(lambda n: _rows(b, n)))


@settings(max_examples=60, deadline=None)
@given(keeps)
def test_left_pack_keeps_order_and_pads_left(rows: list[list[bool]]) -> None:
    keep = torch.tensor(rows)
    index, valid = left_pack(keep)
    assert index.shape[1] == int(keep.sum(dim=1).max())
    for row in range(keep.shape[0]):
        kept = keep[row].nonzero().flatten()
        assert torch.equal(index[row][valid[row]], kept)  # original order
        n_pad = index.shape[1] - kept.numel()
        assert not valid[row, :n_pad].any() and valid[row, n_pad:].all()  # left padding
    inverse = inverse_index(index, valid, keep.shape[1])
    assert torch.equal(inverse >= 0, keep)
    cols = inverse[keep]
    assert torch.equal(index[torch.nonzero(keep)[:, 0], cols], torch.nonzero(keep)[:, 1])


@settings(max_examples=40, deadline=None)
@given(keeps)
def test_prefill_mask_is_causal_over_valid_keys_and_never_empty(rows: list[list[bool]]) -> None:
    valid = torch.tensor(rows)
    mask = prefill_mask(valid)[:, 0]
    n = valid.shape[1]
    assert mask.any(dim=-1).all()  # no query row without a key (no NaN rows)
    for i in range(n):
        for j in range(n):
            expected = (j <= i and bool(valid[:, j].all())) or i == j
            if valid[:, j].all() or i == j:
                assert bool(mask[:, i, j].all()) == expected
    additive = prefill_mask(valid, torch.float32)
    assert torch.equal(additive == 0, prefill_mask(valid))


def test_decode_mask_sees_prompt_keys_and_every_new_token() -> None:
    valid = torch.tensor([[False, True, True], [True, True, False]])
    mask = decode_mask(valid, n_past=2, n_query=2)[:, 0]
    assert mask.shape == (2, 2, 3 + 2 + 2)
    assert torch.equal(mask[:, :, :3], valid[:, None].expand(2, 2, 3))
    assert mask[:, :, 3:5].all()  # the earlier generated tokens
    assert (mask[:, 0, 5] & ~mask[:, 0, 6] & mask[:, 1, 6]).all()  # causal in the new block


def test_gathers_broadcast_and_follow_the_index() -> None:
    index = torch.tensor([[0, 2], [1, 1]])
    hidden = torch.arange(12.0).view(2, 3, 2)
    assert torch.equal(gather_tokens(hidden, index)[1, 0], hidden[1, 1])
    mrope = torch.arange(3 * 3 * 4.0).view(3, 1, 3, 4)  # [3, 1, L, d]: broadcast over rows
    out = gather_tokens(mrope, index)
    assert out.shape == (3, 2, 2, 4) and torch.equal(out[2, 0, 1], mrope[2, 0, 2])
    ids = torch.arange(9).view(3, 1, 3)
    assert gather_positions(ids, index)[1].tolist() == [[3, 5], [4, 4]]
