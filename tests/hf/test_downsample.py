"""scorer="downsample": images resized before the processor to about keep_ratio x n tokens."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from transformers.image_processing_utils import SizeDict
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_resize

from vissparse import VisSparse
from vissparse.config import PruningConfig
from vissparse.hf.downsample import (
    Downsampler,
    ResizeFacts,
    resize_facts,
    smart_resize,
    target_grid,
)
from vissparse.hf.inputs import normalize_batch
from vissparse.hf.pipeline import HFPipeline
from vissparse.host_sync import no_host_sync
from vissparse.lmms.sample_log import sample_rows
from vissparse.strategies import DownsampleScorer, TopKStrategy, select_tokens
from vissparse.strategies.context import PruningContext
from vissparse.testing import random_image, tiny_model

QWEN = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
# (height, width): square, landscape, portrait, a strip, odd sizes, over max_pixels
SIZES = [(448, 448), (300, 500), (500, 180), (64, 900), (97, 131), (1000, 700)]
KEEPS = [0.05, 0.1, 0.25, 0.5, 0.75]
PROMPT = "What is it?"
GEN = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}


def _pipe(model, processor, keep_ratio, **kw):
    return HFPipeline(model, processor, PruningConfig(keep_ratio, scorer="downsample", **kw))


def _grids(inputs, processor):
    """Each image's (rows, cols) of emitted tokens, from the processor's grid."""
    merge = processor.image_processor.merge_size
    return [(int(h) // merge, int(w) // merge) for _, h, w in inputs["image_grid_thw"]]


def _image_tokens(inputs, model):
    return (inputs["input_ids"] == model.config.image_token_id).sum(dim=1).tolist()


def _hf_generate(model, inputs):
    out = model.generate(**inputs, **GEN)
    model.model.rope_deltas = None
    return out[:, inputs["input_ids"].shape[1] :]


def test_smart_resize_is_transformers_rule():
    facts = ResizeFacts(28, 56 * 56, 28 * 28 * 1280)
    for height in (1, 13, 27, 28, 41, 42, 300, 999, 4000):
        for width in (5, 28, 70, 333, 2222):
            if max(height, width) / min(height, width) > 200:
                continue
            expected = hf_resize(height, width, 28, facts.min_pixels, facts.max_pixels)
            assert smart_resize(height, width, facts) == expected


@pytest.mark.parametrize("family", QWEN)
def test_emitted_count_within_one_merge_unit(family):
    """Each side within one merge unit of its exact share; the count within one line."""
    model, processor = tiny_model(family)
    processor = copy.deepcopy(processor)  # a larger max_pixels: grids up to 16 x 16
    low = processor.image_processor.size["shortest_edge"]
    side = 16 * resize_facts(processor).factor
    processor.image_processor.size = SizeDict(shortest_edge=low, longest_edge=side * side)
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]
    prompts = [PROMPT] * len(images)
    full = HFPipeline(model, processor, PruningConfig(1.0)).prepare_inputs(images, prompts)
    n = [r * c for r, c in _grids(full, processor)]
    assert n == _image_tokens(full, model)
    assert max(n) > 100  # grids large enough for the per-side rounding to matter
    items, _ = normalize_batch(images, prompts, ())
    for keep in KEEPS:
        pipe = _pipe(model, processor, keep)
        assert pipe.downsampler.full_tokens(items) == n  # the records' full-size count
        small = pipe._encode(images, prompts, downsample=True)[0]
        grids = _grids(small, processor)
        counts = [r * c for r, c in grids]
        assert counts == _image_tokens(small, model)
        pairs = zip(_grids(full, processor), grids, counts, n, strict=True)
        for (rows, cols), (r, c), count, m in pairs:
            share = math.sqrt(keep)
            assert abs(r - rows * share) < 1 and abs(c - cols * share) < 1, (keep, rows, cols)
            assert abs(count - keep * m) <= max(r, c), (keep, rows, cols, r, c)
        if keep == 0.25:  # the vision encoder itself emits that many tokens
            emb = pipe.adapter.embed(small)
            assert [p.numel() for p in emb.image_positions] == counts


def test_target_grid_picks_the_closest_count_then_the_aspect():
    assert target_grid(16, 16, 0.25) == (8, 8)
    assert target_grid(16, 16, 0.1) == (5, 5)  # 25 of 25.6; 5 x 6 = 30 is farther
    assert target_grid(16, 21, 0.1) == (5, 7)  # 35 of 33.6 (5 x 6 = 30 is farther)
    assert target_grid(1, 40, 0.25) == (1, 20)  # a side never goes below one token
    assert target_grid(3, 5, 1.0) == (3, 5)


@pytest.mark.parametrize("family", QWEN)
def test_keep_ratio_one_is_the_unpruned_model_exactly(family):
    model, processor = tiny_model(family)
    pipe = _pipe(model, processor, 1.0)
    image = random_image(90, 130, seed=3)
    full = pipe.prepare_inputs(image, PROMPT)
    small = pipe._encode(image, PROMPT, downsample=True)[0]
    assert torch.equal(small["pixel_values"], full["pixel_values"])
    details = pipe.generate(image, PROMPT, return_details=True, **GEN)
    assert torch.equal(details.sequences, _hf_generate(model, full))
    assert details.metrics["n_kept"] == details.metrics["n_image_tokens"]


def test_records_are_honest_full_size_tokens_vs_the_tokens_the_lm_sees():
    model, processor = tiny_model("qwen2_vl")
    pipe = _pipe(model, processor, 0.25)
    images = [random_image(112, 112, seed=1), random_image(70, 150, seed=2)]
    prompts = [PROMPT, "Where is the red car?"]
    full = pipe.prepare_inputs(images, prompts)
    small = pipe._encode(images, prompts, downsample=True)[0]
    n_full, n_small = _image_tokens(full, model), _image_tokens(small, model)
    assert all(s < f for s, f in zip(n_small, n_full, strict=True))
    details = pipe.generate(images, prompts, measure_baseline=True, **GEN)
    metrics = details.metrics
    assert metrics["n_image_tokens"] == sum(n_full) and metrics["n_kept"] == sum(n_small)
    assert metrics["downsampled_from"] == n_full
    assert metrics["effective_keep_ratio"] == sum(n_small) / sum(n_full)
    assert [int(m[0].sum()) for m in details.keep_mask] == n_small  # every emitted token
    # the pruned call is the unmodified model on the downsampled images, the baseline on
    # the full-size ones
    assert torch.equal(details.sequences, _hf_generate(model, small))
    baseline = processor.batch_decode(_hf_generate(model, full), skip_special_tokens=True)
    assert metrics["baseline_text"] == baseline
    one = pipe.run(images[0], PROMPT, **GEN)
    assert (one.n_image_tokens, one.n_kept) == (n_full[0], n_small[0])
    base = pipe.run(images[0], PROMPT, prune=False, **GEN)
    assert base.n_image_tokens == base.n_kept == n_full[0]
    answers = pipe.answer_batch(images, prompts, measure_baseline=False, **GEN)
    assert answers.n_image_tokens == n_full and answers.n_kept == n_small


def test_length_limits_count_the_full_size_prompt():
    """``max_length`` counts from the unpruned (full-size) prompt on both sides."""
    model, processor = tiny_model("qwen2_vl")
    pipe = _pipe(model, processor, 0.25)
    image = random_image(112, 112, seed=1)
    length = pipe.prepare_inputs(image, PROMPT)["input_ids"].shape[1]
    details = pipe.generate(image, PROMPT, return_details=True, max_length=length + 3,
                            min_new_tokens=3)  # fmt: skip
    assert details.sequences.shape[1] == 3


def test_fixed_size_families_refuse_it_and_point_to_pool():
    for family in ("llava", "llava_next"):
        model, processor = tiny_model(family)
        with pytest.raises(ValueError, match=r"^`scorer` 'downsample' .*scorer='pool'"):
            _pipe(model, processor, 0.25)


def test_other_stages_and_engines_refuse_it_in_one_line():
    model, processor = tiny_model("qwen2_vl")
    with pytest.raises(ValueError, match=r"^`stage` 'llm' cannot run scorer='downsample'"):
        _pipe(model, processor, 0.25, stage="llm", layer=1)
    ctx = PruningContext(torch.zeros(1, 4, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"^`scorer` 'downsample' resizes each image"):
        select_tokens(DownsampleScorer(), TopKStrategy(), ctx, 0.5)
    with pytest.raises(ValueError, match=r"^`scorer` 'downsample'"):
        DownsampleScorer().score(ctx.image_tokens, ctx.query)


def test_downsampler_leaves_keep_one_alone_and_counts_per_item():
    facts = ResizeFacts(28, 56 * 56, 112 * 112)
    items, _ = normalize_batch([[random_image(112, 112), random_image(56, 112)]], ["a?"], ())
    assert Downsampler(facts, 1.0).resize(items) == (items, {})
    resized, kwargs = Downsampler(facts, 0.25).resize(items)
    assert [i.size for i in resized[0].images] == [(56, 56), (56, 28)]
    assert kwargs["size"]["shortest_edge"] == 56 * 28  # below the processor's own minimum
    assert Downsampler(facts, 0.25).full_tokens(items) == [16 + 8]


def test_pruning_path_is_sync_free():
    model, processor = tiny_model("qwen2_vl")
    pipe = _pipe(model, processor, 0.25)
    images = [random_image(112, 112, seed=1), random_image(60, 100, seed=2)]
    small, prompt_mask, _, _ = pipe._encode(images, [PROMPT, "Is it red?"], downsample=True)
    emb, vision = pipe.embed(small)
    reference = pipe.select_and_apply(emb, prompt_mask, None, None, vision)
    with no_host_sync():
        batch = pipe.select_and_apply(emb, prompt_mask, None, None, vision)
    torch.testing.assert_close(batch.inputs_embeds, reference.inputs_embeds)
    assert batch.n_kept == batch.n_image_tokens == _image_tokens(small, model)


def test_lmms_sample_rows_count_the_full_size_images():
    masks = [[torch.ones(4, dtype=torch.bool)], [torch.ones(2, dtype=torch.bool)]]
    metrics = {"latency_ms": 1.0, "downsampled_from": [16, 8]}
    rows = sample_rows(SimpleNamespace(keep_mask=masks, metrics=metrics, text=["a", "b"]),
                       [("t", 0), ("t", 1)])  # fmt: skip
    assert [(r["image_tokens"], r["kept_tokens"]) for r in rows] == [(16, 4.0), (8, 2.0)]


def test_tune_flop_bound_counts_the_downsampled_image():
    model, processor = tiny_model("qwen2_vl")
    sample = {"image": random_image(112, 112, seed=1), "prompt": PROMPT}
    bounds = {
        scorer: VisSparse(base_model=model, processor=processor, scorer=scorer)._flop_bound(
            sample, 0.25
        )
        for scorer in ("downsample", "random")
    }
    assert bounds["downsample"] > bounds["random"] > 1.0  # the same kept count, a smaller ViT
