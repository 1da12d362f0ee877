"""Tiled families at extreme aspect ratios: the layout follows the model's own unpadding.

transformers' ``unpad_image`` rounds the unpadded side with ``int``, so a tall image
(200x40 on the tiny LLaVA-NeXT) keeps its crop rows with zero columns: the model emits a
newline per row and no crop tokens; a wide one (40x200) keeps zero rows and no newline.
"""

from __future__ import annotations

import math

import pytest
import torch

from vissparse.adapters.base import TokenGrid, image_layout
from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import random_image, tiny_model

from .family_contract import hf_generate

GEN = {"max_new_tokens": 3, "min_new_tokens": 3, "do_sample": False}
# (height, width): tall, wide, a few pixels thin both ways, tiny, square
SIZES = ((200, 40), (40, 200), (900, 3), (3, 900), (1, 1), (2, 3), (56, 56))
TILED = ("llava_next", "llava_onevision", "internvl", "gemma3")  # layout base_tile / tiles
# grid-reading and signal-reading methods: the layout and align_rows at every size
SCORERS = ("pool", "uniform", "visionzip", "cosine")


@pytest.fixture(scope="module", params=TILED)
def tiny(request):
    return request.param, tiny_model(request.param)


def test_zero_column_rows_are_loose_newlines() -> None:
    newline = torch.tensor([False] * 4 + [True] * 4)  # 2x2 grid, then 4 empty crop rows
    layout = image_layout(TokenGrid(2, 2), newline, 8)
    assert [s.shape for s in layout.segments] == [(2, 2)]
    assert layout.loose is not None and layout.loose.tolist() == [4, 5, 6, 7]
    assert torch.equal(layout.newline, newline)


def test_crop_rows_must_still_be_even() -> None:
    newline = torch.tensor([False] * 4 + [False, True, True])  # a row of 1, a row of 0
    with pytest.raises(ValueError, match="rows of equal length"):
        image_layout(TokenGrid(2, 2), newline, 7)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_extreme_sizes_match_the_model_and_prune_to_the_budget(tiny, size) -> None:
    _, (model, processor) = tiny
    image = random_image(*size, seed=1)
    full = HFPipeline(model, processor, PruningConfig(1.0))
    inputs = full.prepare_inputs(image, "What?")
    expected = hf_generate(model, inputs, **GEN)
    out = full.generate(image, "What?", return_details=True, **GEN)
    assert torch.equal(out.sequences, expected)
    n = out.metrics["n_image_tokens"]
    assert out.metrics["n_kept"] == n
    emb, _ = full.embed(inputs)
    (layout,) = full.adapter.layouts(inputs, emb)
    assert layout.n_tokens == n
    cells = [s.index.flatten() for s in layout.segments]
    covered = torch.cat([*cells, layout.newline.nonzero()[:, 0]])
    assert sorted(covered.tolist()) == list(range(n))
    for scorer in SCORERS:
        pipe = HFPipeline(model, processor, PruningConfig(0.5, scorer=scorer))
        pruned = pipe.generate(image, "What?", return_details=True, **GEN)
        assert pruned.metrics["n_kept"] == math.ceil(0.5 * n), scorer
    mask = HFPipeline(model, processor, PruningConfig(0.5, scorer="cosine", mode="mask"))
    masked = mask.generate(image, "What?", return_details=True, **GEN)
    assert torch.equal(masked.sequences, pruned.sequences)  # drop mode exact (cosine last)
