"""``bench --model-config --compile``: both sides timed on the compiled static-cache path."""

import pytest
from torch._dynamo.utils import counters

from vissparse import PruningConfig
from vissparse.bench.compiled_timing import timed_compiled_call
from vissparse.bench.measure import timed_call
from vissparse.bench.model_bench import bench_inputs, check_model_bench, run_model_bench
from vissparse.hf.compiled import bucket_length, static_cache_sizable
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import tiny_model

pytestmark = [
    pytest.mark.skipif(
        not static_cache_sizable(), reason="compile=True needs transformers >= 5.13"
    ),
    pytest.mark.usefixtures("fresh_dynamo"),
]
# inductor costs seconds a graph on a CPU: dynamo and AOTAutograd trace the same graphs
BACKEND = "aot_eager"


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_compiled_timing_gives_the_eager_tokens_and_does_not_recompile(family):
    model, processor = tiny_model(family)
    eager = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
    compiled = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25, compile=True))
    inputs, prompt_mask = bench_inputs(eager, (64, 64), 2, seed=3)
    for prune in (False, True):
        want = timed_call(eager, inputs, prompt_mask, prune, 4)
        first = timed_compiled_call(compiled, inputs, prompt_mask, prune, 4, BACKEND)
        graphs = counters["stats"]["unique_graphs"]
        again = timed_compiled_call(compiled, inputs, prompt_mask, prune, 4, BACKEND)
        assert graphs >= 1 and counters["stats"]["unique_graphs"] == graphs  # warm: no compile
        assert first.batch_tokens == again.batch_tokens == want.batch_tokens
        assert len(again.batch_tokens) == 2 and len(again.tokens) == 4
        assert len(again.decode_ms) == 3 and again.prefill_ms > 0
        assert again.ttft_ms == pytest.approx(
            again.vision_ms + again.overhead_ms + again.prefill_ms
        )
        assert again.sequence_length == want.sequence_length
        assert again.padded_length == bucket_length(want.sequence_length)
        # the padded prompt's share of the static cache: the eager prompt's bytes, scaled
        per_column = want.kv_cache_bytes / want.sequence_length
        assert again.kv_cache_bytes == pytest.approx(per_column * again.padded_length)


def test_compiled_bench_rows_record_compile_and_no_timed_compilation():
    report = run_model_bench("qwen2-vl-2b", [0.25], depth_scale=32, new_tokens=3, repeats=2,
                             warmup=1, progress=False, batch_size=2, compile=True,
                             compile_backend=BACKEND)  # fmt: skip
    assert report["config"]["compile"] is True
    (row,) = report["results"]
    assert row["compile"] is True and row["compiled_graphs_timed"] == 0
    assert counters["stats"]["unique_graphs"] >= 2  # each side's prefill, decode
    for side in ("baseline", "pruned"):
        assert row[side]["padded_length"] == bucket_length(row[side]["sequence_length"])
    assert row["pruned"]["padded_length"] < row["baseline"]["padded_length"]
    assert row["kv_cache_ratio"] < 1 and row["n_kept"] < row["n_image_tokens"]


def test_compile_is_refused_before_the_build_where_it_cannot_run():
    args = ("float32", 1, 1, 1, 32, "sdpa", ["cosine"], "topk")
    with pytest.raises(ValueError, match=r"`compile=True` needs stage='input', got stage='llm'"):
        check_model_bench("qwen2-vl-2b", [0.5], *args, "llm", 1, compile=True)
    with pytest.raises(ValueError, match=r"`compile=True` is not supported on qwen3_5"):
        # at depth/8 its text layers are 3 linear-attention ones and 1 full (weightless copy)
        check_model_bench("qwen3.5-9b", [0.5], "float32", 1, 1, 1, 8, "sdpa", ["cosine"],
                          "topk", "input", None, compile=True)  # fmt: skip
    with pytest.raises(ValueError, match=r"`warmup` must be >= 1 with compile=True"):
        check_model_bench("qwen2-vl-2b", [0.5], "float32", 1, 1, 0, 32, "sdpa", ["cosine"],
                          "topk", "input", None, compile=True)  # fmt: skip
    assert len(check_model_bench("qwen2-vl-2b", [0.5], *args, "input", None, compile=True)) == 1
