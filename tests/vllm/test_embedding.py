"""The plugin's embedding step picks what the HF pipeline picks, from the same tokens."""

import pytest
import torch

from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.selection import SelectionCore
from vissparse.strategies.topk import kept_count
from vissparse.testbed.checkpoints import checkpoint_dir
from vissparse.testbed.evaluate import load_testbed_model
from vissparse.testbed.questions import make_questions
from vissparse.vllm.embedding import kept_embeddings, mrope_channels, prune_images
from vissparse.vllm.settings import ServeSettings

SERVED = ["cosine", "cosine-least", "cosine-max", "divprune", "dart", "cdpruner", "pool",
          "uniform"]  # fmt: skip


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("scorer", SERVED)
def test_kept_indices_equal_the_hf_pipeline(family, scorer):
    model, processor = load_testbed_model(checkpoint_dir(family))
    questions = make_questions(6, seed=1)
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.1, scorer=scorer))
    inputs, mask, _, _ = pipe._encode([q["image"] for q in questions],
                                      [q["question"] for q in questions])  # fmt: skip
    batch = pipe.prune(inputs, mask)
    emb, _ = pipe.embed(inputs)
    images = [
        emb.inputs_embeds[row, pos]
        for row, pos in zip(emb.image_sample, emb.image_positions, strict=True)
    ]
    prompts = [emb.inputs_embeds[row][mask[row]] for row in emb.image_sample]
    layouts = pipe.adapter.layouts(inputs, emb)
    core = ServeSettings.parse({"keep_ratio": 0.1, "scorer": scorer}).core()
    kept = prune_images(core, 0.1, images, prompts, layouts)
    assert [k.tolist() for k in kept] == [m.nonzero().flatten().tolist() for m in batch.image_keep]


def test_merged_values_and_exact_counts():
    core = SelectionCore("cosine", "topk")
    images = [torch.randn(10, 4), torch.randn(7, 4)]
    prompts = [torch.randn(3, 4), torch.zeros(0, 4)]  # the second image has no prompt text
    for (idx, values), image in zip(kept_embeddings(core, 0.3, images, prompts), images,
                                    strict=True):  # fmt: skip
        assert idx.numel() == kept_count(0.3, image.shape[0])
        assert torch.equal(values, image[idx])


def test_a_count_that_differs_from_the_reserved_one_is_refused():
    class Half(SelectionCore):
        def choose(self, ctx, keep_ratio):
            choice = super().choose(ctx, keep_ratio)
            choice.keep[:, 0] = True
            choice.keep[:, 1] = True
            return choice

    with pytest.raises(ValueError, match="whose count adapts to the content"):
        prune_images(Half("cosine", "topk"), 0.1, [torch.randn(20, 4)], [torch.randn(2, 4)])


def test_mrope_channels_follow_the_grid():
    channels = mrope_channels(3, 2, torch.tensor([0, 3, 5]))
    assert channels.tolist() == [[0, 0, 0, 3], [0, 1, 1, 3], [0, 2, 1, 3]]
