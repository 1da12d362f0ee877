"""``bench --model-config --batch-size``: batched calls, whole-batch counts, throughput."""

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from vissparse import PruningConfig
from vissparse.bench.measure import timed_call
from vissparse.bench.model_bench import bench_inputs, run_model_bench
from vissparse.bench.report import MODEL_COLUMNS, markdown_table, with_throughput
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import random_image, tiny_model

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_batch_counts_scale_with_the_batch_and_rows_have_throughput():
    settings = dict(depth_scale=32, new_tokens=2, repeats=1, warmup=0, progress=False)
    one, two = (run_model_bench("qwen2-vl-2b", [0.1], batch_size=b, **settings) for b in (1, 2))
    assert (one["config"]["batch_size"], two["config"]["batch_size"]) == (1, 2)
    assert two["config"]["n_image_tokens"] == 2 * one["config"]["n_image_tokens"] == 512
    assert two["config"]["sequence_length"] == one["config"]["sequence_length"]
    assert 0.99 < two["config"]["flop_counter_vs_analytic"] < 1.01
    (row1,), (row2,) = one["results"], two["results"]
    assert row2["batch_size"] == 2 and row2["n_image_tokens"] == 512
    assert row2["n_kept"] == 2 * row1["n_kept"] == 52
    for side in ("baseline", "pruned"):
        assert row2[side]["kv_cache_bytes"] == 2 * row1[side]["kv_cache_bytes"]
    assert row2["kv_cache_ratio"] == pytest.approx(row1["kv_cache_ratio"])
    assert row2["flops_baseline"] == pytest.approx(2 * row1["flops_baseline"], rel=1e-6)
    assert row2["flop_speedup_bound"] == pytest.approx(row1["flop_speedup_bound"], rel=1e-3)
    for side in ("baseline", "pruned"):
        per_s = row2[f"{side}_sequences_per_s"]
        assert per_s == pytest.approx(2e3 / row2[side]["e2e_ms"]["median"])
        assert row2[f"{side}_tokens_per_s"] == pytest.approx(2 * per_s)  # 2 new tokens each
    gain = row2["pruned_sequences_per_s"] / row2["baseline_sequences_per_s"]
    assert row2["throughput_gain"] == pytest.approx(gain)
    assert row2["throughput_gain"] == pytest.approx(row2["e2e_speedup"])
    table = markdown_table(two["results"])
    assert table.splitlines()[0].startswith("| batch | keep |") and "| 2 | 0.10 |" in table


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_a_batch_prunes_each_image_as_it_is_pruned_alone(family):
    model, processor = tiny_model(family)
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))  # default scorer
    inputs, prompt_mask = bench_inputs(pipe, (112, 112), 3, seed=5)
    pixels = inputs["pixel_values"].reshape(3, -1)
    assert not torch.equal(pixels[0], pixels[1])  # a distinct image per prompt
    batch = pipe.prune(inputs, prompt_mask)
    assert batch.image_sample == [0, 1, 2]
    for i in range(3):
        alone_inputs, alone_mask = bench_inputs(pipe, (112, 112), 1, seed=5 + i)
        (alone,) = pipe.prune(alone_inputs, alone_mask).image_keep
        assert torch.equal(batch.image_keep[i], alone)


@pytest.mark.parametrize("prune", [False, True])
def test_timed_call_on_a_left_padded_batch_gives_each_row_its_own_tokens(prune):
    model, processor = tiny_model("qwen2_vl")
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
    images = [random_image(112, 112, seed=1), random_image(112, 224, seed=2)]
    inputs, prompt_mask, _, _ = pipe._encode(images, ["What is it?", "What is it?"])
    assert not inputs["attention_mask"].all()  # rows of different lengths: left padding
    batch = timed_call(pipe, inputs, prompt_mask, prune=prune, new_tokens=4)
    alone = []
    for image in images:
        one, one_mask, _, _ = pipe._encode(image, "What is it?")
        alone.append(timed_call(pipe, one, one_mask, prune=prune, new_tokens=4))
    assert batch.batch_tokens == [a.tokens for a in alone]
    assert batch.tokens == batch.batch_tokens[0]
    per_layer = [a.image_tokens_per_layer[0] for a in alone]
    assert batch.image_tokens_per_layer[0] == sum(per_layer)


def test_old_results_without_batch_size_read_as_batch_one():
    report = json.loads((RESULTS / "llava-1.5-7b_cpu_float32_d8.json").read_text())
    # as recorded before batches and --compile: no batch size, throughput or compile flag
    added = ("batch_size", "compile", "throughput_gain", "baseline_sequences_per_s",
             "pruned_sequences_per_s", "baseline_tokens_per_s", "pruned_tokens_per_s")  # fmt: skip
    for part in (report["config"], *report["results"]):
        for key in added:
            part.pop(key, None)
    rows = with_throughput(report)["results"]
    assert all(r["batch_size"] == 1 for r in rows)
    row = rows[0]
    e2e = row["pruned"]["e2e_ms"]["median"]
    assert row["pruned_tokens_per_s"] == pytest.approx(report["config"]["new_tokens"] * 1e3 / e2e)
    assert row["throughput_gain"] == pytest.approx(row["e2e_speedup"])
    header = markdown_table(rows, MODEL_COLUMNS).splitlines()[0]
    assert "| batch |" in header and "| throughput |" in header


def test_model_benchmark_script_renders_a_table_per_batch_size(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(RESULTS.parent))
    try:
        script = importlib.import_module("model_benchmark")
    finally:
        sys.path.remove(str(RESULTS.parent))
    stem = "llava-1.5-7b_cpu_float32_d8"
    shutil.copy(RESULTS / f"{stem}.json", tmp_path / f"{stem}.json")
    batched = json.loads((RESULTS / f"{stem}.json").read_text())
    batched["config"].update(batch_size=8, n_image_tokens=8 * 576)
    for row in batched["results"]:
        row.update(batch_size=8)
    (tmp_path / f"{stem}_b8.json").write_text(json.dumps(batched))
    batched["config"].update(compile=True)
    for row in batched["results"]:  # the recorded rows carry their own flags
        row.update(batch_size=8, compile=True)
    (tmp_path / f"{stem}_b8_compiled.json").write_text(json.dumps(batched))
    assert script.result_path(tmp_path, stem, 1).name == f"{stem}.json"
    assert script.result_path(tmp_path, stem, 1, True).name == f"{stem}_compiled.json"
    assert script.recorded_runs(tmp_path, stem) == [(1, False), (8, False), (8, True)]
    argv = ["model_benchmark.py", "--render-only", "--out", str(tmp_path), "--batch-size", "1",
            "--batch-size", "8", "--produced-by", "bash benchmarks/gpu_issue33.sh"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    script.main()
    text = (tmp_path / "model_cpu.md").read_text()
    assert text.startswith("Produced by `bash benchmarks/gpu_issue33.sh` (each config's table")
    assert text.count("**llava-1.5-7b**") == 3  # batch 1, then batch 8 eager and compiled
    assert "**llava-1.5-7b** at batch 8 (" in text and "each 576 image tokens" in text
    assert text.count("(each call answers all 8 prompts)") == 2
    compiled = text.split("**llava-1.5-7b** at batch 8, compiled")[1]
    assert "| batch | compiled | keep |" in compiled and "| 8 | True |" in compiled
    assert "| compiled |" not in text.split("**llava-1.5-7b** at batch 8, compiled")[0]
    monkeypatch.setattr(sys, "argv", ["model_benchmark.py", "--batch-size", "0"])
    with pytest.raises(SystemExit):
        script.main()
    assert "argument --batch-size: expected a positive integer, got '0'" in capsys.readouterr().err
