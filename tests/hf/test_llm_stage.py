"""Pruning inside the language model (stage="llm") on every family's tiny model."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.hf.family_contract import generation_options, hf_generate
from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import FAMILY_NAMES, random_image, tiny_model

PROMPT = "What color is the car?"
GEN = {"max_new_tokens": 6}


def _image(family: str, seed: int = 1, wide: bool = False) -> Any:
    side = 56 if family.startswith("llava") else 84
    return random_image(side * (2 if wide else 1), side, seed=seed)


def _pipe(model: Any, processor: Any, **config: Any) -> HFPipeline:
    return HFPipeline(model, processor, PruningConfig(**config))


@torch.inference_mode()
def prefill(pipe: HFPipeline, image: Any, prompt: Any) -> tuple[torch.Tensor, Any, Any]:
    """First-step logits ``[B, V]``, the KV cache and the pruner (stage llm) or None."""
    inputs, prompt_mask, _, _ = pipe._encode(image, prompt)
    pipe.adapter.reset_state()
    emb, vision = pipe.embed(inputs)
    if pipe.schedule is None:
        batch = pipe.select_and_apply(emb, prompt_mask, None, pipe.layouts(inputs, emb), vision)
        with pipe.feeding(batch):
            out = pipe.model(**batch.model_inputs(), use_cache=True)
        return out.logits[:, -1], out.past_key_values, None
    pruner = pipe.llm_pruner(emb, prompt_mask, None, pipe.layouts(inputs, emb), vision)
    full = pipe.unpruned(emb)
    with pipe.feeding(full, pruner):
        out = pipe.model(**full.model_inputs(), use_cache=True)
    pipe.adapter.reset_state()
    return out.logits[:, -1], out.past_key_values, pruner


def _tokens(pipe: HFPipeline, image: Any, prompt: Any) -> torch.Tensor:
    return pipe.generate(image, prompt, return_details=True, **GEN).sequences


# Gemma 3 refuses stage="llm" (bidirectional image attention, sliding windows): tested below
# Qwen3.5 has no mask-mode reference (recurrent layers): its in-LLM tests are in
# tests/hf/test_qwen3_5.py
LLM_FAMILIES = [f for f in FAMILY_NAMES if f not in ("gemma3", "qwen3_5")]


@pytest.fixture(scope="module", params=LLM_FAMILIES)
def family(request: Any) -> tuple[str, Any, Any]:
    model, processor = tiny_model(request.param, text_layers=4)
    return request.param, model, processor


@pytest.mark.parametrize("scorer", ["fastv", "pdrop", "text-attn", "cosine"])
def test_drop_equals_mask_reference(family: tuple[str, Any, Any], scorer: str) -> None:
    name, model, processor = family
    image = _image(name)
    drop = _pipe(model, processor, keep_ratio=0.25, scorer=scorer, stage="llm", layer=2)
    mask = _pipe(model, processor, keep_ratio=0.25, scorer=scorer, stage="llm", layer=2,
                 mode="mask")  # fmt: skip
    logits_drop, _, pruner_drop = prefill(drop, image, PROMPT)
    logits_mask, _, pruner_mask = prefill(mask, image, PROMPT)
    assert torch.equal(pruner_drop.keep[-1], pruner_mask.keep[-1])
    assert torch.allclose(logits_drop, logits_mask, atol=1e-4, rtol=0)
    assert torch.equal(_tokens(drop, image, PROMPT), _tokens(mask, image, PROMPT))


def test_pyramid_schedule_drop_equals_mask(family: tuple[str, Any, Any]) -> None:
    name, model, processor = family
    image = _image(name, wide=True)
    config = dict(keep_ratio=0.25, scorer="pdrop", stage="llm", layer=(1, 3))
    drop, mask = _pipe(model, processor, **config), _pipe(model, processor, mode="mask", **config)
    logits_drop, cache, pruner = prefill(drop, image, PROMPT)
    logits_mask, mask_cache, _ = prefill(mask, image, PROMPT)
    assert torch.allclose(logits_drop, logits_mask, atol=1e-4, rtol=0)
    assert torch.equal(_tokens(drop, image, PROMPT), _tokens(mask, image, PROMPT))
    # the KV cache per layer: every token below layer 1, the stage's kept tokens after
    full = int(pruner.attention_mask.shape[1])
    stage1, stage2 = (int(k.sum()) for k in pruner.keep)
    lengths = [int(layer.keys.shape[-2]) for layer in cache.layers]
    assert lengths == [full, stage1, stage1, stage2] == pruner.kv_lengths()
    assert stage1 > stage2
    assert [int(layer.keys.shape[-2]) for layer in mask_cache.layers] == [full] * 4


def test_layer_zero_equals_input_stage(family: tuple[str, Any, Any]) -> None:
    name, model, processor = family
    image = _image(name)
    llm = _pipe(model, processor, keep_ratio=0.25, scorer="cosine", stage="llm", layer=0)
    flat = _pipe(model, processor, keep_ratio=0.25, scorer="cosine")
    logits_llm, cache, _ = prefill(llm, image, PROMPT)
    logits_in, cache_in, _ = prefill(flat, image, PROMPT)
    assert torch.allclose(logits_llm, logits_in, atol=1e-4, rtol=0)
    assert [layer.keys.shape for layer in cache.layers] == [
        layer.keys.shape for layer in cache_in.layers
    ]
    assert torch.equal(_tokens(llm, image, PROMPT), _tokens(flat, image, PROMPT))


def test_keep_all_equals_hf_generate(family: tuple[str, Any, Any]) -> None:
    name, model, processor = family
    image = _image(name)
    pipe = _pipe(model, processor, keep_ratio=1.0, scorer="fastv", stage="llm", layer=2)
    inputs = pipe.prepare_inputs(image, PROMPT)
    pipe.adapter.reset_state()
    with torch.inference_mode():
        expected = model.generate(**inputs, **GEN)[:, inputs["input_ids"].shape[1] :]
        reference = model(**inputs).logits[:, -1]
    pipe.adapter.reset_state()
    details = pipe.generate(image, PROMPT, return_details=True, **GEN)
    assert torch.equal(details.sequences, expected)
    logits, _, _ = prefill(pipe, image, PROMPT)
    assert torch.allclose(logits, reference, atol=1e-4, rtol=0)
    assert details.metrics["effective_keep_ratio"] == 1.0


@pytest.mark.parametrize("scorer", ["fastv", "pdrop", "text-attn"])
def test_batch_of_three_equals_each_alone(family: tuple[str, Any, Any], scorer: str) -> None:
    name, model, processor = family
    pipe = _pipe(model, processor, keep_ratio=0.25, scorer=scorer, stage="llm", layer=2)
    # different prompt lengths (left padding) and, for Qwen, different image sizes
    images = [_image(name, seed=1), _image(name, seed=2, wide=True), _image(name, seed=3)]
    prompts = [PROMPT, "Is there a dog on the left of the red house here?", "Count them."]
    batch = pipe.generate(images, prompts, return_details=True, **GEN)
    for i, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
        alone = pipe.generate(image, prompt, return_details=True, **GEN)
        n = alone.sequences.shape[1]  # alone stops at EOS; the batch pads after it
        assert torch.equal(batch.sequences[i, :n], alone.sequences[0]), i
        assert (batch.sequences[i, n:] == model.generation_config.pad_token_id).all()
        assert torch.equal(batch.keep_mask[i][0], alone.keep_mask[0])


def test_accounting_and_hooks_left(family: tuple[str, Any, Any]) -> None:
    name, model, processor = family
    pipe = _pipe(model, processor, keep_ratio=0.25, scorer="fastv", stage="llm", layer=2)
    attn = pipe.adapter.decoder_layers()[1].self_attn
    shared = attn.config
    details = pipe.generate(_image(name), PROMPT, return_details=True, **GEN)
    m = details.metrics
    n, kept = m["n_image_tokens"], m["n_kept"]
    assert m["image_tokens_per_layer"] == [[n, n, kept, kept]]
    assert m["avg_image_tokens"] == (2 * n + 2 * kept) / 4
    assert m["effective_keep_ratio"] == pytest.approx(m["avg_image_tokens"] / n)
    assert m["llm_ms"] > 0  # the hooks' own time is measured
    assert attn.config is shared
    for layer in pipe.adapter.decoder_layers():
        assert not layer._forward_pre_hooks and not layer._forward_hooks


def test_text_attention_matches_eager_attention_weights() -> None:
    model, processor = tiny_model("qwen2_vl", attn_implementation="eager", text_layers=3)
    pipe = _pipe(model, processor, keep_ratio=0.5, scorer="fastv", stage="llm", layer=2)
    image = _image("qwen2_vl")
    inputs = pipe.prepare_inputs(image, PROMPT)
    pipe.adapter.reset_state()
    with torch.inference_mode():
        out = model(**inputs, output_attentions=True)
    pipe.adapter.reset_state()
    expected = out.attentions[1][0, :, -1].float().mean(dim=0)  # layer K-1, last token
    _, _, pruner = prefill(pipe, image, PROMPT)
    got = pruner._requests[0].result[0]
    assert torch.allclose(got, expected, atol=1e-5)


def test_gemma3_refuses_the_llm_stage_with_its_reason() -> None:
    model, processor = tiny_model("gemma3")
    with pytest.raises(ValueError, match="not supported on gemma3: its image tokens attend"):
        _pipe(model, processor, stage="llm", layer=1)


def test_refusals() -> None:
    model, processor = tiny_model("llava")
    with pytest.raises(ValueError, match="beyond the language model's 2 layers"):
        _pipe(model, processor, stage="llm", layer=2)
    pipe = _pipe(model, processor, stage="llm", layer=1, scorer="fastv")
    with pytest.raises(ValueError, match="num_beams"):
        pipe.generate(_image("llava"), PROMPT, max_new_tokens=2, num_beams=2)
    model.model.language_model.config._attn_implementation = "flash_attention_2"
    try:
        with pytest.raises(ValueError, match="'sdpa' or 'eager'"):
            _pipe(model, processor, stage="llm", layer=1)
    finally:
        model.model.language_model.config._attn_implementation = "sdpa"


def test_prune_reports_what_the_language_model_kept() -> None:
    """prune() (what `vissparse show` draws) runs the prefill: it has the final keep masks."""
    model, processor = tiny_model("llava", text_layers=4)
    pipe = _pipe(model, processor, keep_ratio=0.25, scorer="fastv", stage="llm", layer=2)
    image = _image("llava")
    inputs, prompt_mask, _, _ = pipe._encode(image, PROMPT)
    pruned = pipe.prune(inputs, prompt_mask)
    details = pipe.generate(image, PROMPT, return_details=True, **GEN)
    assert torch.equal(pruned.image_keep[0], details.keep_mask[0])
    assert pruned.n_kept == [4] and pruned.image_tokens_per_layer == [[16, 16, 4, 4]]


@pytest.mark.parametrize("option", ["repetition_penalty", "no_repeat_ngram_size", "min_length",
                                    "stop_strings"])  # fmt: skip
def test_keep_all_equals_hf_generate_with_options(
    family: tuple[str, Any, Any], option: str
) -> None:
    """The in-LLM stage hands generate the prompt's ids too (see the family contract)."""
    name, model, processor = family
    image = _image(name)
    pipe = _pipe(model, processor, keep_ratio=1.0, scorer="fastv", stage="llm", layer=2)
    inputs = pipe.prepare_inputs(image, PROMPT)
    greedy = hf_generate(model, inputs, max_new_tokens=6, min_new_tokens=6)[0].tolist()
    kwargs = generation_options(option, greedy, processor, inputs["input_ids"].shape[1])
    expected = hf_generate(model, inputs, max_new_tokens=6, **kwargs)
    details = pipe.generate(image, PROMPT, return_details=True, max_new_tokens=6, **kwargs)
    assert torch.equal(details.sequences, expected)


STATIC = {"max_new_tokens": 6, "min_new_tokens": 6, "cache_implementation": "static"}


@pytest.mark.parametrize(("scorer", "mode"), [("fastv", "drop"), ("cosine", "mask")])
def test_static_cache_decodes_as_the_dynamic_cache(
    family: tuple[str, Any, Any], scorer: str, mode: str
) -> None:
    """A static cache hands attention all its slots: the pruned layers' masks cover them."""
    name, model, processor = family
    pipe = _pipe(model, processor, keep_ratio=0.25, scorer=scorer, stage="llm", layer=2,
                 mode=mode)  # fmt: skip
    # two prompt lengths (left padding) and, for Qwen, two image sizes
    images = [_image(name, seed=1), _image(name, seed=2, wide=True)]
    prompts = [PROMPT, "Is there a dog on the left of the red house here?"]
    dynamic = pipe.generate(images, prompts, return_details=True, max_new_tokens=6,
                            min_new_tokens=6)  # fmt: skip
    static = pipe.generate(images, prompts, return_details=True, **STATIC)
    assert torch.equal(static.sequences, dynamic.sequences)
    for got, want in zip(static.keep_mask, dynamic.keep_mask, strict=True):
        assert torch.equal(got[0], want[0]) and int(got[0].sum()) < got[0].numel()


def test_static_cache_with_eager_attention() -> None:
    model, processor = tiny_model("llava", attn_implementation="eager", text_layers=4)
    pipe = _pipe(model, processor, keep_ratio=0.25, scorer="fastv", stage="llm", layer=2)
    image = _image("llava")
    dynamic = pipe.generate(image, PROMPT, return_details=True, max_new_tokens=6,
                            min_new_tokens=6)  # fmt: skip
    assert torch.equal(pipe.generate(image, PROMPT, return_details=True, **STATIC).sequences,
                       dynamic.sequences)  # fmt: skip


def test_input_stage_with_a_static_cache_matches_the_model(family: tuple[str, Any, Any]) -> None:
    name, model, processor = family
    image = _image(name)
    full = _pipe(model, processor, keep_ratio=1.0)
    inputs = full.prepare_inputs(image, PROMPT)
    expected = hf_generate(model, inputs, **STATIC)
    assert torch.equal(full.generate(image, PROMPT, return_details=True, **STATIC).sequences,
                       expected)  # fmt: skip
    pruned = _pipe(model, processor, keep_ratio=0.25)
    dynamic = pruned.generate(image, PROMPT, return_details=True, max_new_tokens=6,
                              min_new_tokens=6)  # fmt: skip
    static = pruned.generate(image, PROMPT, return_details=True, **STATIC)
    assert torch.equal(static.sequences, dynamic.sequences)


def test_static_cache_with_linear_attention_layers() -> None:
    """Qwen3.5: its Gated DeltaNet layers get no mask; its attention layers the widened one."""
    model, processor = tiny_model("qwen3_5", text_layers=4)
    pipe = _pipe(model, processor, keep_ratio=0.25, scorer="cosine", stage="llm", layer=2)
    images = [random_image(64, 64, seed=1), random_image(64, 96, seed=2)]
    prompts = [PROMPT, "Is there a dog on the left?"]
    try:  # transformers 5.6 builds no static-cache masks for linear-attention layers
        hf_generate(model, pipe.prepare_inputs(images[0], PROMPT), max_new_tokens=1,
                    cache_implementation="static")  # fmt: skip
    except KeyError as err:
        pytest.skip(f"the model's own generate has no static cache here ({err!r})")
    dynamic = pipe.generate(images, prompts, return_details=True, max_new_tokens=6,
                            min_new_tokens=6)  # fmt: skip
    static = pipe.generate(images, prompts, return_details=True, **STATIC)
    assert torch.equal(static.sequences, dynamic.sequences)
