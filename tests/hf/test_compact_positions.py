"""`positions="compact"`: the kept sequence numbered 0, 1, ... (vLLM's 1-D numbering)."""

import pytest
import torch

from vissparse import VisSparse
from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import random_image, tiny_model


def test_compact_positions_are_contiguous_and_decoding_follows_them():
    model, processor = tiny_model("llava", 0)
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25, positions="compact"))
    images = [random_image(seed=1), random_image(seed=2)]
    prompts = ["What is it?", "Where is the big red one?"]  # rows of different lengths
    inputs, mask, _, _ = pipe._encode(images, prompts)
    batch = pipe.prune(inputs, mask)
    for row in range(2):
        real = batch.attention_mask[row].bool()
        assert batch.position_ids[row][real].tolist() == list(range(int(real.sum())))
    keep = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25)).prune(inputs, mask)
    assert not torch.equal(keep.position_ids, batch.position_ids)  # original positions differ
    # the model given the compact ids directly (what vLLM computes) answers the same
    details = pipe.generate(images, prompts, return_details=True, max_new_tokens=4)
    with torch.inference_mode():
        direct = model.generate(inputs_embeds=batch.inputs_embeds,
                                attention_mask=batch.attention_mask, max_new_tokens=4)  # fmt: skip
    assert torch.equal(details.sequences, direct)


def test_compact_positions_are_refused_where_they_mean_nothing():
    with pytest.raises(ValueError, match="needs mode='drop' and stage='input'"):
        PruningConfig(keep_ratio=0.5, positions="compact", mode="mask")
    with pytest.raises(ValueError, match="`positions` must be one of"):
        PruningConfig(keep_ratio=0.5, positions="shifted")
    model, processor = tiny_model("qwen2_vl", 0)
    with pytest.raises(ValueError, match="positions='compact' is for 1-D RoPE families"):
        VisSparse(base_model=model, processor=processor, keep_ratio=0.5, positions="compact")
