"""Qwen3.5: drop mode against a direct run on the pruned embeddings; mask mode refused.

Its linear-attention layers carry a recurrent state through every token, so masking a
token out of attention is not dropping it: the family contract's drop-equals-mask
reference is replaced by a run of the model on embeddings built here from HF's own
pieces (text embeddings, ``get_image_features``, ``get_rope_index``) with the pruned
image tokens removed.
"""

import pytest
import torch

from tests.hf.family_contract import GEN, PROMPTS, SCORERS, FamilyContract, pipeline, tiny  # noqa: F401
from vissparse.testing import random_image, tiny_model

MERGING = ("pool", "visionzip", "prumerge+")  # their kept tokens carry merged values


@torch.no_grad()
def direct_inputs(model, inputs, image_keep):
    """One prompt's pruned embeddings and positions, built from HF's own pieces."""
    ids = inputs["input_ids"]
    assert ids.shape[0] == 1, "one prompt at a time"
    embeds = model.get_input_embeddings()(ids)
    output = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
    is_image = ids == model.config.image_token_id
    features = torch.cat(list(output.pooler_output)).to(embeds.dtype)
    embeds = embeds.masked_scatter(is_image[..., None].expand_as(embeds), features)
    positions, _ = model.model.get_rope_index(
        ids, inputs["mm_token_type_ids"], image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )  # fmt: skip
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[is_image] = torch.cat(image_keep)
    embeds, positions = embeds[:, keep[0]], positions[:, :, keep[0]]
    return {"inputs_embeds": embeds, "position_ids": positions,
            "attention_mask": torch.ones(1, embeds.shape[1], dtype=torch.long)}  # fmt: skip


def direct_logits(model, direct):
    model.model.rope_deltas = None
    with torch.no_grad():
        return model(**direct).logits[:, -1]


class TestQwen35(FamilyContract):
    family = "qwen3_5"
    sizes = ((128, 128), (96, 160), (64, 96))
    mask_reference = False

    @pytest.mark.parametrize("scorer", SCORERS)
    def test_drop_equals_mask(self, tiny, scorer):  # noqa: F811
        """Replaced: drop mode equals the model run directly on the pruned embeddings.

        Merging methods write merged values into their kept tokens, so for them only
        the sequence (text, positions, which tokens) is compared.
        """
        model, processor = tiny
        drop = pipeline(model, processor, 0.25, "drop", scorer=scorer)
        for image, prompt in zip(self.images(), PROMPTS, strict=True):
            inputs, prompt_mask, _, _ = drop._encode(image, prompt)
            pruned = drop.prune(inputs, prompt_mask)
            direct = direct_inputs(model, inputs, pruned.image_keep)
            assert torch.equal(pruned.position_ids, direct["position_ids"])
            same = (pruned.inputs_embeds == direct["inputs_embeds"]).all(dim=-1)[0]
            n_text = inputs["input_ids"].shape[1] - pruned.n_image_tokens[0]
            assert int(same.sum()) >= n_text  # the text, and the kept tokens but merged ones
            if scorer in MERGING:
                continue
            assert bool(same.all())
            with torch.no_grad(), drop.feeding(pruned):
                logits = model(**pruned.model_inputs()).logits[:, -1]
            torch.testing.assert_close(logits, direct_logits(model, direct), atol=1e-5, rtol=1e-5)
            details = drop.generate(image, prompt, return_details=True, **GEN)
            model.model.rope_deltas = None
            expected = model.generate(**direct, **GEN)
            model.model.rope_deltas = None
            assert torch.equal(details.sequences, expected)


def test_masking_is_not_dropping_in_its_linear_attention_layers():
    """Why mask mode is refused: a masked token still moves the recurrent state."""
    model, processor = tiny_model("qwen3_5")
    drop = pipeline(model, processor, 0.25, "drop")
    inputs, prompt_mask, _, _ = drop._encode(random_image(128, 128), PROMPTS[0])
    pruned = drop.prune(inputs, prompt_mask)
    dropped = direct_logits(model, direct_inputs(model, inputs, pruned.image_keep))
    full = direct_inputs(model, inputs, [torch.ones_like(k) for k in pruned.image_keep])
    is_image = inputs["input_ids"] == model.config.image_token_id
    mask = torch.ones_like(inputs["input_ids"])
    mask[is_image] = torch.cat(pruned.image_keep).long()
    masked = direct_logits(model, dict(full, attention_mask=mask))
    assert (masked - dropped).abs().max() > 1e-3


@pytest.mark.parametrize(("config", "reason"), [
    ({"mode": "mask"}, "mode='mask' is not supported on qwen3_5: its linear-attention"),
    ({"stage": "llm", "scorer": "fastv"}, "stage='llm' is not supported on qwen3_5"),
])  # fmt: skip
def test_refusals_name_the_reason(tiny_35, config, reason):
    from vissparse import PruningConfig
    from vissparse.hf.pipeline import HFPipeline

    model, processor = tiny_35
    with pytest.raises(ValueError, match=reason):
        HFPipeline(model, processor, PruningConfig(0.25, **config))


@pytest.fixture(scope="module")
def tiny_35():
    return tiny_model("qwen3_5")
