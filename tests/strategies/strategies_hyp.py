"""Hypothesis generators of scorer/strategy inputs."""

import torch
from hypothesis import strategies as st

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
keep_ratios = st.floats(min_value=0.05, max_value=1.0, allow_nan=False)


@st.composite
def token_batches(draw, max_b=4, max_n=48, max_d=12, padding=True, dtypes=DTYPES):
    """(tokens [B,N,D], query [B,D], valid [B,N] or None), from a drawn seed."""
    b = draw(st.integers(1, max_b))
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(b, n, d, generator=gen).to(dtype)
    query = torch.randn(b, d, generator=gen).to(dtype)
    valid = None
    if padding and draw(st.booleans()):
        kind = draw(st.sampled_from(["right", "left", "random"]))
        lengths = [draw(st.integers(0, n)) for _ in range(b)]
        valid = torch.zeros(b, n, dtype=torch.bool)
        for row, length in enumerate(lengths):
            if kind == "right":
                valid[row, :length] = True
            elif kind == "left":
                valid[row, n - length :] = True
            else:
                valid[row] = torch.rand(n, generator=gen) < 0.7
    return tokens, query, valid


def min_gap(scores, valid=None):
    """Smallest gap between two scores of the same row among valid tokens (inf if < 2)."""
    gaps = []
    for row in range(scores.shape[0]):
        s = scores[row] if valid is None else scores[row][valid[row]]
        if s.numel() > 1:
            gaps.append(float(s.sort().values.diff().min()))
    return min(gaps, default=float("inf"))
