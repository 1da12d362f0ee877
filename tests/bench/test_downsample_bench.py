"""The model benchmark's downsample row: its pruned side runs the smaller vision encoder."""

import pytest

from vissparse.bench import model_bench
from vissparse.bench.flops import analytic_prefill_flops
from vissparse.bench.model_configs import MODEL_CONFIGS
from vissparse.testing import tiny_model


@pytest.fixture
def tiny_bench(monkeypatch):
    """``qwen2-vl-2b``'s name and image size (448 x 448) on the tiny Qwen2-VL (fast)."""
    model, processor = tiny_model("qwen2_vl")  # its processor caps images at 112 x 112
    shape = MODEL_CONFIGS["qwen2-vl-2b"]
    monkeypatch.setattr(model_bench, "build_model", lambda *a, **k: (model, processor, shape))
    return model


def test_downsample_row_counts_the_smaller_encoder(tiny_bench):
    report = model_bench.run_model_bench(
        "qwen2-vl-2b", [0.25], new_tokens=1, repeats=1, warmup=0, progress=False,
        scorer=["cosine", "downsample"],
    )  # fmt: skip
    cosine, down = report["results"]
    full = report["config"]["n_image_tokens"]
    assert full == 16 and cosine["n_image_tokens"] == down["n_image_tokens"] == full
    assert cosine["n_kept"] == down["n_kept"] == 4  # 2 x 2 of the 4 x 4 grid
    assert down["downsampled_to"] == [56, 56] and "downsampled_to" not in cosine
    # the same language-model input length, but the pruned side's encoder saw 4 x 4
    # patches instead of 8 x 8: the counted and the analytic bound both count it
    assert down["pruned"]["sequence_length"] == cosine["pruned"]["sequence_length"]
    assert down["flops_pruned"] < cosine["flops_pruned"]
    assert down["flop_speedup_bound"] > cosine["flop_speedup_bound"]
    length = down["pruned"]["sequence_length"]
    config = tiny_bench.config
    expected = analytic_prefill_flops(config, length, 8 * 8) / analytic_prefill_flops(
        config, length, 4 * 4
    )
    assert down["analytic_flop_speedup_bound"] / cosine["analytic_flop_speedup_bound"] == (
        pytest.approx(expected)
    )
