import pytest

from vissparse import VisSparse
from vissparse.bench.tune import grid, search


def test_grid_and_search():
    assert grid(0.05)[0] == 0.05 and grid(0.05)[-1] == 1.0 and len(grid(0.05)) == 20
    with pytest.raises(ValueError, match="step"):
        grid(0)
    calls = []

    def measure(r):
        calls.append(r)
        return {"keep_ratio": r, "speedup": 1 / r, "accuracy_delta": 0.5 * (1 - r)}

    choice, rows = search(measure, lambda row: row["speedup"] >= 3, largest=True, step=0.01)
    assert choice == 0.33 and len(rows) == len(set(calls)) <= 10
    choice, _ = search(measure, lambda row: row["accuracy_delta"] <= 0.1, largest=False, step=0.01)
    assert choice == 0.8
    assert search(measure, lambda row: row["speedup"] >= 100, True, 0.05)[0] is None
    assert search(measure, lambda row: row["speedup"] >= 0.5, True, 0.05)[0] == 1.0


@pytest.fixture(scope="module")
def mock():
    return VisSparse("mock", mock=True, dim=64, n_tokens=256)


def test_tune_accuracy_is_reproducible(mock):
    first = mock.tune(max_accuracy_drop=0.0, n_samples=30, step=0.05, progress=False)
    second = mock.tune(max_accuracy_drop=0.0, n_samples=30, step=0.05, progress=False)
    assert first.met and first.keep_ratio == second.keep_ratio
    assert [r["keep_ratio"] for r in first.measurements] == [
        r["keep_ratio"] for r in second.measurements
    ]
    chosen = next(r for r in first.measurements if r["keep_ratio"] == first.keep_ratio)
    assert chosen["accuracy_delta"] <= 0.0 and "smallest" in first.reason


def test_tune_speedup_target_and_impossible_target():
    # the default mock size: at 256 tokens the best speedup sits near 1.5x, too close to
    # the target for a timing on a shared machine
    mock = VisSparse("mock", mock=True)
    result = mock.tune(target_speedup=1.5, n_samples=20, step=0.05, progress=False)
    assert result.met and result.keep_ratio < 1.0
    chosen = next(r for r in result.measurements if r["keep_ratio"] == result.keep_ratio)
    assert chosen["speedup"] >= 1.5 and "largest" in result.reason
    impossible = mock.tune(target_speedup=1000, n_samples=10, step=0.05, progress=False)
    assert not impossible.met and impossible.keep_ratio is None
    assert "cannot be met" in impossible.reason and "0.05" in impossible.reason


def test_tune_argument_errors(mock):
    with pytest.raises(ValueError, match="exactly one"):
        mock.tune()
    with pytest.raises(ValueError, match="exactly one"):
        mock.tune(target_speedup=2, max_accuracy_drop=0.1)
    with pytest.raises(ValueError, match="target_speedup"):
        mock.tune(target_speedup=-1)


def test_impossible_speedup_on_a_hf_model_names_the_flop_bound():
    from vissparse.testing import random_image, tiny_model

    model, processor = tiny_model("llava")
    vs = VisSparse(model, processor=processor)
    samples = [{"image": random_image(seed=i), "prompt": "What?", "answer": "x"} for i in range(2)]
    result = vs.tune(target_speedup=1000, n_samples=2, step=0.5, samples=samples, warmup=0,
                     progress=False, max_new_tokens=1)  # fmt: skip
    assert not result.met
    assert "cannot be met" in result.reason and "prefill FLOPs fall at most" in result.reason
