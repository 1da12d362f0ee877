"""benchmarks/prefill_profile.py: the three prefills it compares and its op shares."""

import importlib
import sys
from pathlib import Path

import pytest
import torch

from vissparse import PruningConfig
from vissparse.bench.model_bench import bench_inputs
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import tiny_model

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("prefill_profile")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_pruned_prefill_is_compared_with_an_unpruned_one_of_its_length(script):
    model, processor = tiny_model("llava")
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
    inputs, prompt_mask = bench_inputs(pipe, (112, 112), 1, 0)
    cases = script.prefill_cases(pipe, inputs, prompt_mask)
    full, pruned, prefix = (cases[k] for k in ("full", "pruned", "same-length prefix"))
    n_full = inputs["input_ids"].shape[1]
    assert full["inputs_embeds"].shape[1] == n_full
    n = pruned["inputs_embeds"].shape[1]
    assert n == n_full - 16 + 4 and prefix["inputs_embeds"].shape[1] == n
    assert torch.equal(prefix["position_ids"][0], torch.arange(n))  # contiguous
    assert int(pruned["position_ids"][0, -1]) == n_full - 1  # the kept tokens' own positions
    shares, total_ms = script.op_shares(model, pruned)
    assert total_ms > 0 and sum(shares.values()) == pytest.approx(1.0)
    assert any(key.startswith(script.GEMM) for key in shares)


def test_shortfall_splits_the_vision_encoders_part_from_the_short_prefills(script):
    flops = {"vision": 10, "full": 90, "pruned": 9}  # bound 100 / 19
    at_one_rate = script.shortfall({"vision": 10.0, "full": 90.0, "pruned": 9.0}, flops)
    assert at_one_rate[1] == (
        "measured 5.26x = 100% of the bound; at the full prefill's LM FLOP rate 5.26x = 100%"
    )
    slow_encoder = script.shortfall({"vision": 20.0, "full": 90.0, "pruned": 9.0}, flops)
    assert slow_encoder[0].startswith("vision encoder: 18.2% of the unpruned prefill's time")
    assert "= 72% of the bound; at the full prefill's LM FLOP rate 3.79x = 72%" in slow_encoder[1]
