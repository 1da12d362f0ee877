"""Shape-faithful configs, phase timings and the FLOP bound (small depth, CPU)."""

import pytest
import torch

from vissparse import PruningConfig
from vissparse.bench.flops import analytic_prefill_flops, count_flops, lm_flops, sdpa_flops
from vissparse.bench.measure import cache_bytes, prefill_flops, timed_call
from vissparse.bench.model_bench import check_targets, run_model_bench
from vissparse.bench.model_configs import (
    MODEL_CONFIGS,
    _gemma3,
    _internvl,
    _llava,
    _onevision,
    _qwen,
    _qwen3_5,
    deepstack_levels,
)
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import random_image, tiny_model


def test_configs_have_the_real_shapes():
    llava, _, processor = _llava(MODEL_CONFIGS["llava-1.5-7b"], 3, 4)
    assert (llava.text_config.hidden_size, llava.text_config.intermediate_size) == (4096, 11008)
    assert (llava.vision_config.hidden_size, llava.vision_config.image_size) == (1024, 336)
    assert llava.vision_config.num_hidden_layers == 3 and llava.text_config.num_hidden_layers == 4
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]}],
        add_generation_prompt=True, tokenize=False)  # fmt: skip
    ids = processor(images=[random_image(336, 336)], text=[text], return_tensors="pt")["input_ids"]
    assert int((ids == llava.image_token_id).sum()) == 576
    qwen, _, _ = _qwen(MODEL_CONFIGS["qwen2-vl-7b"], 4, 4)
    assert (qwen.text_config.hidden_size, qwen.text_config.num_key_value_heads) == (3584, 4)
    assert qwen.vision_config.embed_dim == 1280 and qwen.vision_config.depth == 4
    assert MODEL_CONFIGS["qwen2-vl-2b"].text["tie_word_embeddings"] is True
    onevision, _, processor = _onevision(MODEL_CONFIGS["llava-onevision-7b"], 2, 2)
    assert (onevision.vision_config.hidden_size, onevision.text_config.hidden_size) == (1152, 3584)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]}],
        add_generation_prompt=True, tokenize=False)  # fmt: skip
    ids = processor(images=[random_image(384, 384)], text=[text], return_tensors="pt")["input_ids"]
    assert int((ids == onevision.image_token_id).sum()) == 729 + 27 * 28  # base + one crop tile
    big = processor(images=[random_image(1152, 1152)], text=[text], return_tensors="pt")
    assert int((big["input_ids"] == onevision.image_token_id).sum()) > 7000  # 9 tiles
    gemma, _, processor = _gemma3(MODEL_CONFIGS["gemma-3-12b"], 2, 6)
    assert gemma.text_config.layer_types.count("full_attention") == 1  # 5 local : 1 global
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]}],
        add_generation_prompt=True, tokenize=False)  # fmt: skip
    ids = processor(images=[[random_image(300, 200)]], text=[text], return_tensors="pt")
    assert int((ids["input_ids"] == gemma.image_token_id).sum()) == 256


def test_qwen3_vl_config_keeps_its_deepstack_levels_and_token_count():
    config, _, processor = _qwen(MODEL_CONFIGS["qwen3-vl-8b"], 3, 4)
    assert (config.text_config.hidden_size, config.text_config.num_key_value_heads) == (4096, 8)
    assert config.text_config.rope_parameters["mrope_interleaved"] is True
    assert config.vision_config.deepstack_visual_indexes == [0, 1, 2]  # 8, 16, 24 of 27
    assert deepstack_levels([8, 16, 24], 27, 14) == [4, 8, 12]
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]}],
        add_generation_prompt=True, tokenize=False)  # fmt: skip
    ids = processor(images=[random_image(512, 512)], text=[text], return_tensors="pt")["input_ids"]
    assert int((ids == config.image_token_id).sum()) == 256


def _image_tokens(config, processor, size):
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]}],
        add_generation_prompt=True, tokenize=False)  # fmt: skip
    inputs = processor(images=[random_image(*size)], text=[text], return_tensors="pt")
    return int((inputs["input_ids"] == config.image_token_id).sum())


def test_qwen3_5_and_internvl_configs_keep_their_layouts():
    qwen, _, processor = _qwen3_5(MODEL_CONFIGS["qwen3.5-9b"], 3, 4)
    assert qwen.text_config.layer_types == ["linear_attention"] * 3 + ["full_attention"]
    assert (qwen.text_config.linear_num_value_heads, qwen.text_config.head_dim) == (32, 256)
    assert _image_tokens(qwen, processor, (512, 512)) == 256
    assert _qwen3_5(MODEL_CONFIGS["qwen3.5-9b"], 1, 2)[0].text_config.layer_types[-1] == (
        "full_attention"
    )
    internvl, _, processor = _internvl(MODEL_CONFIGS["internvl3-8b"], 2, 2)
    assert (internvl.vision_config.hidden_size, internvl.text_config.hidden_size) == (1024, 3584)
    assert _image_tokens(internvl, processor, (448, 896)) == 3 * 256  # 2 tiles + thumbnail
    assert _image_tokens(internvl, processor, (448, 448)) == 256  # one tile, no thumbnail


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl", "qwen3_5", "internvl"])
def test_counted_flops_equal_the_formula_on_tiny_models(family):
    """The formula covers Qwen3-VL's DeepStack mergers, Qwen3.5's Gated DeltaNet layers
    and gated attention, InternVL's tiles; it is exact for these layers."""
    model, processor = tiny_model(family)
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
    inputs, prompt_mask, _, _ = pipe._encode(random_image(112, 224), "What?")
    counted = prefill_flops(pipe, inputs, prompt_mask, prune=False)
    n, pixels = inputs["input_ids"].shape[1], inputs["pixel_values"]
    patches = pixels.shape[0] * (64 if family == "internvl" else 1)  # 8 x 8 patches a tile
    assert counted == analytic_prefill_flops(model.config, n, patches)
    batch = pipe.prune(inputs, prompt_mask)
    length = n - batch.n_image_tokens[0] + batch.n_kept[0]
    expected = analytic_prefill_flops(model.config, length, patches)
    pruned = prefill_flops(pipe, inputs, prompt_mask, prune=True)  # + the scoring's own
    assert expected <= pruned <= 1.01 * expected


def test_depth_scale_keeps_both_parts_and_rejects_bad_values():
    shape = MODEL_CONFIGS["llava-1.5-7b"]
    assert shape.depths(8) == (3, 4) and shape.depths(1) == (24, 32)
    assert shape.depths(1000) == (1, 1)
    with pytest.raises(ValueError, match="depth_scale"):
        shape.depths(0.5)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_phase_timing_follows_generate(family):
    model, processor = tiny_model(family)
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
    image, prompt = random_image(112, 112), "What is it?"
    inputs, prompt_mask, _, _ = pipe._encode(image, prompt)
    gen = {"max_new_tokens": 5, "min_new_tokens": 5, "do_sample": False}
    base = timed_call(pipe, inputs, prompt_mask, prune=False, new_tokens=5)
    pruned = timed_call(pipe, inputs, prompt_mask, prune=True, new_tokens=5)
    expected = model.generate(**inputs, **gen)[0, inputs["input_ids"].shape[1] :].tolist()
    assert base.tokens == expected
    assert (
        pruned.tokens
        == pipe.generate(image, prompt, return_details=True, **gen).sequences[0].tolist()
    )
    assert len(base.decode_ms) == 4 and base.ttft_ms >= base.prefill_ms > 0
    assert base.e2e_ms == pytest.approx(base.ttft_ms + sum(base.decode_ms))
    ratio = pruned.kv_cache_bytes / base.kv_cache_bytes
    assert ratio == pytest.approx(pruned.sequence_length / base.sequence_length)


def test_grouped_query_attention_is_counted_as_with_repeated_keys():
    # transformers passes enable_gqa on CUDA; torch's own formula rejects those shapes
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    grouped = count_flops(lambda: sdpa(q, k, v, enable_gqa=True))
    repeated = count_flops(lambda: sdpa(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)))
    assert grouped == repeated == 4 * 4 * 6 * 9 * 8
    assert sdpa_flops(q.shape, k.shape, v.shape) == grouped


def test_flop_count_and_formula():
    assert count_flops(lambda: torch.ones(3, 5) @ torch.ones(5, 7)) == 2 * 3 * 5 * 7
    model, processor = tiny_model("llava")
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
    inputs, prompt_mask, _, _ = pipe._encode(random_image(), "What?")
    full, pruned = (prefill_flops(pipe, inputs, prompt_mask, p) for p in (False, True))
    assert full > pruned > 0
    n = inputs["input_ids"].shape[1]
    lm_share = lm_flops(model.config.text_config, n)
    assert lm_share < analytic_prefill_flops(model.config, n, 16)


def test_run_model_bench_report_and_targets():
    report = run_model_bench("qwen2-vl-2b", [0.1, 1.0], depth_scale=32, new_tokens=2,
                             repeats=1, warmup=0, progress=False)  # fmt: skip
    cfg = report["config"]
    assert (cfg["vision_layers"], cfg["text_layers"]) == (1, 1) and cfg["n_image_tokens"] == 256
    assert 0.99 < cfg["flop_counter_vs_analytic"] < 1.01
    low, full = report["results"]
    for key in ("prefill_speedup", "decode_speedup", "e2e_speedup", "flop_speedup_bound",
                "kv_cache_ratio", "overhead_ms"):  # fmt: skip
        assert low[key] > 0
    assert low["n_kept"] == 26 and full["n_kept"] == 256
    text = cfg["sequence_length"] - 256
    assert low["kv_cache_ratio"] == pytest.approx((text + 26) / (text + 256))
    assert low["flop_speedup_bound"] > 1.0 and full["flop_speedup_bound"] == pytest.approx(
        1.0, abs=1e-3
    )
    assert low["analytic_flop_speedup_bound"] == pytest.approx(low["flop_speedup_bound"], rel=0.1)
    checks = check_targets(report)
    assert [c["target"] for c in checks] == [
        "scoring + masking overhead <= 2% of baseline prefill at keep 0.1"
    ]
    assert cache_bytes(object()) == 0


def test_several_scorers_share_one_model_and_signal_time_is_reported():
    report = run_model_bench("qwen2-vl-2b", [0.1], depth_scale=16, new_tokens=1,
                             repeats=1, warmup=0, progress=False,
                             scorer=["cosine", "visionzip"])  # fmt: skip
    cosine, visionzip = report["results"]
    assert (cosine["scorer"], visionzip["scorer"]) == ("cosine", "visionzip")
    assert cosine["n_kept"] == visionzip["n_kept"] == 26  # merged tokens count once
    assert cosine["signal_ms"] == 0 and visionzip["signal_ms"] > 0
    assert visionzip["flop_speedup_bound"] > 1.0


def test_llm_stage_phase_timing_follows_generate_and_counts_layers():
    model, processor = tiny_model("qwen2_vl", text_layers=4)
    config = PruningConfig(keep_ratio=0.25, scorer="fastv", stage="llm", layer=2)
    pipe = HFPipeline(model, processor, config)
    image, prompt = random_image(112, 112), "What is it?"
    inputs, prompt_mask, _, _ = pipe._encode(image, prompt)
    gen = {"max_new_tokens": 5, "min_new_tokens": 5, "do_sample": False}
    base = timed_call(pipe, inputs, prompt_mask, prune=False, new_tokens=5)
    pruned = timed_call(pipe, inputs, prompt_mask, prune=True, new_tokens=5)
    details = pipe.generate(image, prompt, return_details=True, **gen)
    assert pruned.tokens == details.sequences[0].tolist()
    n, kept = details.metrics["n_image_tokens"], details.metrics["n_kept"]
    assert pruned.image_tokens_per_layer == [n, n, kept, kept]
    assert base.image_tokens_per_layer == [n] * 4
    full = base.sequence_length
    assert pruned.layer_lengths == [full, full, full - n + kept, full - n + kept]
    ratio = pruned.kv_cache_bytes / base.kv_cache_bytes
    assert ratio == pytest.approx(sum(pruned.layer_lengths) / (4 * full))
    assert pruned.overhead_ms > 0 and pruned.ttft_ms == pytest.approx(
        pruned.vision_ms + pruned.overhead_ms + pruned.prefill_ms
    )
    counted = prefill_flops(pipe, inputs, prompt_mask, prune=True)
    assert prefill_flops(pipe, inputs, prompt_mask, prune=False) > counted


def test_run_model_bench_llm_stage_reports_fair_counts():
    report = run_model_bench("qwen2-vl-2b", [0.25], depth_scale=7, new_tokens=2, repeats=1,
                             warmup=0, progress=False, scorer="fastv", stage="llm",
                             layer=2)  # fmt: skip
    (row,) = report["results"]
    assert report["config"]["text_layers"] == 4 and row["layers"] == [2]
    assert row["n_kept"] == 64 and row["avg_image_tokens"] == (2 * 256 + 2 * 64) / 4
    assert row["analytic_flop_speedup_bound"] == pytest.approx(row["flop_speedup_bound"], rel=0.1)
    # half the layers see every token: as costly as keeping more than half before the LM
    assert 0.55 < row["input_keep_at_equal_flops"] < 0.65
    input_row = run_model_bench("qwen2-vl-2b", [0.25], depth_scale=7, new_tokens=1, repeats=1,
                                warmup=0, progress=False)["results"][0]  # fmt: skip
    assert input_row["input_keep_at_equal_flops"] == pytest.approx(0.25, abs=1 / 256)
    assert input_row["avg_image_tokens"] == 64
