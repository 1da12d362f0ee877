"""LLaVA-OneVision beyond the shared contract: anyres-max-9 downsampling, multi-image
prompts (untiled images), vision signals from a tower without [CLS]."""

from __future__ import annotations

import torch

from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import random_image, tiny_model

GEN = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}


def test_large_image_rows_are_downsampled_and_still_prune_exactly() -> None:
    model, processor = tiny_model("llava_onevision")
    image = random_image(112, 112, seed=3)  # 4 x 4 tiles: more than 9, so downsampled
    drop = HFPipeline(model, processor, PruningConfig(0.25, scorer="visionzip"))
    mask = HFPipeline(model, processor, PruningConfig(0.25, scorer="visionzip", mode="mask"))
    inputs = drop.prepare_inputs(image, "What is it?")
    emb, vision = drop.embed(inputs)
    (layout,) = drop.layouts(inputs, emb)
    crops = layout.segments[1]
    rows, cols = crops.shape
    assert rows * cols < 16 * 4  # fewer crop tokens than the 16 tiles' 2 x 2 patches
    assert rows == cols and layout.newline.sum() == rows  # one newline per kept row
    assert vision is not None and vision.attention[0].shape[0] == emb.image_positions[0].numel()
    assert torch.equal(vision.attention[0][layout.newline], torch.zeros(rows))
    a = drop.generate(image, "What is it?", return_details=True, **GEN)
    b = mask.generate(image, "What is it?", return_details=True, **GEN)
    assert torch.equal(a.sequences, b.sequences)
    assert a.metrics["n_kept"] == -(-a.metrics["n_image_tokens"] // 4)


def test_images_of_a_multi_image_prompt_are_one_tile_and_a_newline() -> None:
    model, processor = tiny_model("llava_onevision")
    pipe = HFPipeline(model, processor, PruningConfig(0.5, scorer="visionzip"))
    images = [random_image(56, 56, seed=1), random_image(40, 70, seed=2)]
    inputs = pipe.prepare_inputs(images, "Compare them.")
    emb, _ = pipe.embed(inputs)
    for layout in pipe.layouts(inputs, emb):
        assert layout.n_tokens == 4 + 1 and layout.newline.tolist() == [False] * 4 + [True]
    out = pipe.generate(images, "Compare them.", return_details=True, **GEN)
    assert [int(m.sum()) for m in out.keep_mask] == [3, 3]  # ceil(0.5 * 5), newline counted
