"""The compiled path: static cache + torch.compile at bucketed lengths (``compile=True``)."""

import copy
from typing import Any

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters
from transformers import CompileConfig, GenerationConfig

from vissparse import PruningConfig
from vissparse.hf.compiled import (
    bucket_length,
    compile_config,
    compiled_kwargs,
    pad_batch,
    static_cache_sizable,
)
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import FAMILY_NAMES, random_image, tiny_model

# transformers < 5.13 (make test-lowest) cannot size a static cache: compile=True refuses
# it, which tests/hf/test_compiled_versions.py checks
pytestmark = [
    pytest.mark.skipif(
        not static_cache_sizable(), reason="compile=True needs transformers >= 5.13"
    ),
    pytest.mark.usefixtures("fresh_dynamo"),
]

GEN = {"max_new_tokens": 5, "min_new_tokens": 5}
PROMPTS = ["What is it?", "Is the red house on the left of the big tree?"]
# every family with a plain KV cache; Qwen3.5's linear-attention layers refuse compile=True
STATIC_FAMILIES = [f for f in FAMILY_NAMES if f != "qwen3_5"]
# inductor (the default backend) costs tens of seconds a family on a CPU: it runs on one
# 1-D RoPE and one M-RoPE family; the others trace the same graphs through dynamo and
# AOTAutograd and run them eagerly (what a backend could get wrong is numerics, not shapes)
INDUCTOR_FAMILIES = ("llava", "qwen2_vl")


def _traced(model: Any, backend: str = "aot_eager") -> CompileConfig:
    """The path's own compile config with a cheaper backend."""
    config = compile_config(model, {})
    config.backend = backend
    return config


def _images(family: str) -> list[Any]:
    if family.startswith("qwen"):  # two grids: two image-token counts
        return [random_image(64, 64, seed=1), random_image(64, 96, seed=2)]
    return [random_image(seed=1), random_image(seed=2)]


def _pipe(model: Any, processor: Any, **config: Any) -> HFPipeline:
    return HFPipeline(model, processor, PruningConfig(**config))


@pytest.mark.parametrize("family", STATIC_FAMILIES)
def test_compiled_greedy_tokens_equal_eager(family: str) -> None:
    """A batch of two prompts (left padding), pruned and unpruned: the same tokens."""
    model, processor = tiny_model(family)
    mode = "mask" if family == "llava_next" else "drop"
    eager = _pipe(model, processor, keep_ratio=0.25, mode=mode)
    compiled = _pipe(model, processor, keep_ratio=0.25, mode=mode, compile=True)
    images = _images(family)
    backend = {} if family in INDUCTOR_FAMILIES else {"compile_config": _traced(model)}
    want = eager.generate(images, PROMPTS, measure_baseline=True, **GEN)
    got = compiled.generate(images, PROMPTS, measure_baseline=True, **backend, **GEN)
    assert counters["stats"]["unique_graphs"] >= 1  # it ran compiled
    assert torch.equal(got.sequences, want.sequences)
    assert got.metrics["baseline_text"] == want.metrics["baseline_text"]
    assert got.metrics["n_kept"] < got.metrics["n_image_tokens"]


def test_compilations_stay_within_the_buckets() -> None:
    """20 calls, mixed keep ratios, prompt lengths and batch sizes: one graph per bucket.

    The count can fail: without the buckets each prompt length would compile its own
    prefill and each cache length its own decode step.
    """
    model, processor = tiny_model("llava")
    backend = CompileConfig(backend="eager", dynamic=False, mode="default")  # fast to build
    prompts = [
        "Why?",
        "What is it?",
        "What colour is the big house on the left here?",
        "Is there a red car parked next to the tall tree behind the old house, or not?",
    ]
    prefill, decode, lengths, cache = set(), set(), set(), 0
    for call in range(20):
        keep = (0.1, 0.25, 0.5, 1.0, 0.3)[call % 5]
        batch = 1 + call % 2
        texts = [prompts[(call + i) % len(prompts)] for i in range(batch)]
        images = [random_image(seed=call + i) for i in range(batch)]
        pipe = _pipe(model, processor, keep_ratio=keep, compile=True)
        pipe.generate(images, texts, compile_config=backend, **GEN)
        inputs, prompt_mask, _, _ = pipe._encode(images, texts)
        kept = int(pipe.prune(inputs, prompt_mask).inputs_embeds.shape[1])
        lengths.add(kept)
        # transformers keeps the largest static cache of earlier calls (no reallocation)
        cache = max(cache, bucket_length(bucket_length(kept) + GEN["max_new_tokens"]))
        prefill.add((batch, bucket_length(kept), cache))
        decode.add((batch, cache))
    graphs = counters["stats"]["unique_graphs"]
    assert len(lengths) > len(prefill)  # the buckets were needed
    bound = len(prefill) + len(decode)
    assert 2 <= graphs <= bound < 20, (graphs, sorted(prefill), sorted(decode), sorted(lengths))
    print(f"{graphs} graphs within {bound}, {len(lengths)} pruned lengths")


def test_qwen3_5_refuses_compile() -> None:
    model, processor = tiny_model("qwen3_5")
    with pytest.raises(ValueError, match=r"^`compile=True` is not supported on qwen3_5: its "):
        _pipe(model, processor, keep_ratio=0.25, compile=True)


def test_compile_refuses_another_cache() -> None:
    model, processor = tiny_model("llava")
    pipe = _pipe(model, processor, keep_ratio=0.25, compile=True)
    with pytest.raises(ValueError, match=r"^`cache_implementation` must be 'static' \(or unset"):
        pipe.generate(random_image(), "What?", cache_implementation="dynamic")
    model.generation_config.disable_compile = True
    with pytest.raises(ValueError, match=r"^`disable_compile`=True contradicts compile=True"):
        pipe.generate(random_image(), "What?")
    with pytest.raises(ValueError, match=r"^`cache_implementation` must be 'static'"):
        compiled_kwargs(model, {"max_new_tokens": 4, "cache_implementation": "dynamic"}, 64)
    given = GenerationConfig(cache_implementation="offloaded")
    with pytest.raises(ValueError, match="got 'offloaded'"):
        compiled_kwargs(model, {"max_new_tokens": 4, "generation_config": given}, 64)


def test_compile_keeps_a_given_compile_config_and_sizes_the_cache() -> None:
    model, _ = tiny_model("llava")
    given = CompileConfig(backend="eager", fullgraph=True)
    out = compiled_kwargs(model, {"max_new_tokens": 70, "compile_config": given}, 64)
    assert out["compile_config"].backend == "eager" and out["compile_config"].fullgraph
    assert out["compile_config"] is not given and given._compile_all_devices is None
    assert out["max_cache_len"] == bucket_length(64 + 70) == 192
    assert out["prefill_chunk_size"] == 64 and out["cache_implementation"] == "static"


def test_padding_leaves_the_eager_answer_unchanged() -> None:
    """M-RoPE positions ``[3, B, L]`` are padded on their last axis, masked."""
    model, processor = tiny_model("qwen2_vl")
    pipe = _pipe(model, processor, keep_ratio=0.25)
    inputs, prompt_mask, _, _ = pipe._encode(_images("qwen2_vl"), PROMPTS)
    batch = pipe.prune(inputs, prompt_mask)
    padded = pad_batch(batch, batch.inputs_embeds.shape[1] + 7, pad_token_id=3)
    assert padded.position_ids.shape[:2] == batch.position_ids.shape[:2]
    assert padded.position_ids.shape[-1] == batch.position_ids.shape[-1] + 7
    assert padded.attention_mask[:, :7].sum() == 0 and (padded.input_ids[:, :7] == 3).all()
    with torch.inference_mode():
        want = model(**batch.model_inputs()).logits[:, -1]
        pipe.adapter.reset_state()
        got = model(**padded.model_inputs()).logits[:, -1]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_the_facade_takes_compile_for_a_loaded_model() -> None:
    from vissparse import VisSparse

    model, processor = tiny_model("llava")
    wrapped = VisSparse(model, keep_ratio=0.25, processor=processor, compile=True)
    assert wrapped.config.compile and wrapped.pipeline.config.compile
    assert wrapped._pipeline_for(0.5).config.compile  # sweeps and tunes stay compiled
    model, processor = tiny_model("qwen3_5")
    with pytest.raises(ValueError, match=r"^`compile=True` is not supported on qwen3_5"):
        VisSparse(model, keep_ratio=0.25, processor=processor, compile=True)


def test_a_generation_config_carries_the_compiled_options() -> None:
    """With ``generation_config=`` the options go into a copy of it (HF warns on both)."""
    model, processor = tiny_model("llava")
    given = GenerationConfig(max_new_tokens=4, do_sample=False,
                             pad_token_id=model.generation_config.pad_token_id)  # fmt: skip
    out = compiled_kwargs(model, {"generation_config": given}, 64)
    assert set(out) == {"generation_config"} and given.cache_implementation is None
    config = out["generation_config"]
    assert (config.cache_implementation, config.prefill_chunk_size, config.max_cache_len) == (
        "static", 64, 128,
    )  # fmt: skip
    image = random_image()
    want = _pipe(model, processor, keep_ratio=0.25).generate(
        image, PROMPTS[0], return_details=True, generation_config=given
    )
    traced = copy.deepcopy(given)
    traced.compile_config = CompileConfig(backend="eager", dynamic=False, mode="default")
    got = _pipe(model, processor, keep_ratio=0.25, compile=True).generate(
        image, PROMPTS[0], return_details=True, generation_config=traced
    )
    assert counters["stats"]["unique_graphs"] >= 1
    assert torch.equal(got.sequences, want.sequences) and got.sequences.shape[1] == 4


def test_sliding_window_layers_do_not_compile_every_decode_step() -> None:
    """Gemma 3: a static graph would bake in the sliding cache's token count (one graph a
    step, then dynamo's recompile limit and eager decoding); a dynamic one does not."""
    model, processor = tiny_model("gemma3")
    config = _traced(model, backend="eager")
    assert config.dynamic is None
    pipe = _pipe(model, processor, keep_ratio=0.25, compile=True)
    eager = _pipe(model, processor, keep_ratio=0.25)
    gen = {"max_new_tokens": 12, "min_new_tokens": 12}
    for seed in (1, 2):
        got = pipe.generate(random_image(seed=seed), PROMPTS[0], return_details=True,
                            compile_config=config, **gen)  # fmt: skip
        want = eager.generate(random_image(seed=seed), PROMPTS[0], return_details=True, **gen)
        assert torch.equal(got.sequences, want.sequences)
    assert 2 <= counters["stats"]["unique_graphs"] <= 3
