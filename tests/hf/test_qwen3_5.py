"""Qwen3.5: drop mode against a direct run on the pruned embeddings; mask mode refused.

Its linear-attention layers carry a recurrent state through every token, so masking a
token out of attention is not dropping it: the family contract's drop-equals-mask
reference is replaced by a run of the model on embeddings built here from HF's own
pieces (text embeddings, ``get_image_features``, ``get_rope_index``) with the pruned
image tokens removed.
"""

import copy

import pytest
import torch

from tests.hf.family_contract import GEN, PROMPTS, SCORERS, FamilyContract, pipeline, tiny  # noqa: F401
from tests.hf.test_llm_stage import prefill
from vissparse import PruningConfig
from vissparse.hf.pipeline import HFPipeline
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
    ({"mode": "mask", "stage": "llm", "layer": 2}, "mode='mask' is not supported on qwen3_5"),
    ({"stage": "llm", "layer": 1, "scorer": "fastv"},
     r"layer\(s\) \[0\] are linear-attention layers, .* choose `layer` among \[2\]"),
])  # fmt: skip
def test_refusals_name_the_reason(deep, config, reason):
    model, processor = deep
    with pytest.raises(ValueError, match=reason):
        HFPipeline(model, processor, PruningConfig(0.25, **config))


# --- pruning inside the language model (stage="llm") ---------------------------------
# Mask mode is no reference here either; drop mode is checked against HF's own text model
# run in two parts: its first K layers on every token, then its layers K.. on the kept ones.


@pytest.fixture(scope="module")
def deep():
    """Four LM layers: linear, full, linear, full attention."""
    return tiny_model("qwen3_5", text_layers=4)


def _llm(model, processor, **config):
    return HFPipeline(model, processor, PruningConfig(**{"keep_ratio": 0.25, **config}))


@torch.no_grad()
def two_part_logits(model, emb, keep, k):
    """HF's text model on every token up to layer ``k``, then its layers ``k..`` on the
    kept tokens at their original positions (a shallow copy holding those layers)."""
    lm = model.model.language_model
    out = lm(inputs_embeds=emb.inputs_embeds, position_ids=emb.position_ids,
             attention_mask=emb.attention_mask, output_hidden_states=True,
             use_cache=False)  # fmt: skip
    rest = copy.copy(lm)
    rest._modules = dict(lm._modules)  # its own module table: lm keeps all its layers
    rest.config = copy.deepcopy(lm.config)
    rest.config.layer_types = lm.config.layer_types[k:]
    rest.config.num_hidden_layers = len(lm.layers) - k
    rest.layers = lm.layers[k:]
    cols = keep[0].nonzero().flatten()
    ones = torch.ones(1, cols.numel(), dtype=torch.long)
    tail = rest(inputs_embeds=out.hidden_states[k][:, cols],
                position_ids=emb.position_ids[:, :, cols], attention_mask=ones,
                use_cache=False)  # fmt: skip
    return model.lm_head(tail.last_hidden_state[:, -1])


@pytest.mark.parametrize(("layer", "scorer"), [(1, "cosine"), (2, "fastv"), (2, "text-attn"),
                                               (3, "cosine")])  # fmt: skip
def test_llm_stage_equals_hf_run_in_two_parts(deep, layer, scorer):
    model, processor = deep
    pipe = _llm(model, processor, scorer=scorer, stage="llm", layer=layer)
    image = random_image(128, 96, seed=1)
    logits, _, pruner = prefill(pipe, image, PROMPTS[0])
    emb = pipe.adapter.embed(pipe.prepare_inputs(image, PROMPTS[0]))
    pipe.adapter.reset_state()
    reference = two_part_logits(model, emb, pruner.keep[-1], layer)
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
    full = _llm(model, processor, keep_ratio=1.0)
    assert (logits - prefill(full, image, PROMPTS[0])[0]).abs().max() > 1e-2  # not vacuous


def test_llm_stage_layer_zero_equals_input_stage_and_keep_all_equals_hf(deep):
    model, processor = deep
    image = random_image(128, 96, seed=1)
    llm = _llm(model, processor, stage="llm", layer=0)
    flat = _llm(model, processor)
    prompt = PROMPTS[0]
    torch.testing.assert_close(prefill(llm, image, prompt)[0], prefill(flat, image, prompt)[0],
                               atol=1e-5, rtol=1e-5)  # fmt: skip
    tokens = [p.generate(image, prompt, return_details=True, **GEN).sequences for p in (llm, flat)]
    assert torch.equal(*tokens)
    keep_all = _llm(model, processor, keep_ratio=1.0, scorer="fastv", stage="llm", layer=2)
    inputs = keep_all.prepare_inputs(image, PROMPTS[0])
    model.model.rope_deltas = None
    expected = model.generate(**inputs, **GEN)[:, inputs["input_ids"].shape[1] :]
    model.model.rope_deltas = None
    got = keep_all.generate(image, PROMPTS[0], return_details=True, **GEN).sequences
    assert torch.equal(got, expected)


def test_llm_stage_batch_cache_and_hooks(deep):
    """A left-padded batch equals each prompt alone (padding zeroed before the linear
    layers' state); the attention layers' caches hold every token below the stage and the
    kept ones from it on; no hook is left behind."""
    model, processor = deep
    pipe = _llm(model, processor, scorer="fastv", stage="llm", layer=2)
    before = hook_counts(model)
    images = [random_image(128, 96, seed=1), random_image(64, 128, seed=2),
              random_image(96, 96, seed=3)]  # fmt: skip
    batch = pipe.generate(images, PROMPTS, return_details=True, **GEN)
    for i, (image, prompt) in enumerate(zip(images, PROMPTS, strict=True)):
        alone = pipe.generate(image, prompt, return_details=True, **GEN)
        assert torch.equal(batch.sequences[i], alone.sequences[0])
    # the longest prompt (no padding) keeps fewer tokens than the other: after the drop its
    # padding columns hold copies of real tokens, which the linear layers must not read
    pair_images, pair_prompts = [random_image(128, 128, seed=1), random_image(64, 64)], [
        "Hi?", "What is it?"]  # fmt: skip
    logits, _, pruner = prefill(pipe, pair_images, pair_prompts)
    assert int(pruner.attention_mask[0].sum()) > int(pruner.attention_mask[1].sum())
    assert int(pruner.keep[-1][0].sum()) < int(pruner.keep[-1][1].sum())
    for i in range(2):
        alone = prefill(pipe, pair_images[i], pair_prompts[i])[0][0]
        torch.testing.assert_close(logits[i], alone, atol=1e-4, rtol=1e-4)
    _, cache, pruner = prefill(pipe, images[0], PROMPTS[0])
    full, kept = int(pruner.attention_mask.shape[1]), int(pruner.keep[-1].sum())
    attention = [layer.keys.shape[-2] for i, layer in enumerate(cache.layers) if i in (1, 3)]
    assert attention == [full, kept] and pruner.kv_lengths() == [full, full, kept, kept]
    assert hook_counts(model) == before  # (transformers' own output-capturing hooks stay)


def hook_counts(model):
    return {name: (len(m._forward_pre_hooks), len(m._forward_hooks))
            for name, m in model.named_modules()}  # fmt: skip
