from types import SimpleNamespace as NS

import pytest

from vissparse.bench.paired import normalize_answer, paired_benchmark
from vissparse.bench.timing import median, quantile


def test_paired_benchmark_counts_and_alternates():
    calls = []

    def base(item):
        calls.append(("base", item))
        return NS(text=item, n_kept=8, n_image_tokens=8)

    def pruned(item):
        calls.append(("pruned", item))
        return NS(text="x" if item == "b" else item, n_kept=2, n_image_tokens=8)

    summary, records = paired_benchmark(
        ["a", "b", "c"], base, pruned, reference=lambda i: i,
        keep_ratio=0.25, warmup=1, progress=False,
    )  # fmt: skip
    assert calls[:2] == [("base", "a"), ("pruned", "a")]  # warm-up
    assert calls[2:6] == [("base", "a"), ("pruned", "a"), ("pruned", "b"), ("base", "b")]
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert summary["baseline_accuracy"] == 1.0
    assert summary["accuracy_delta"] == pytest.approx(1 / 3)
    assert [r.correct for r in records] == [True, False, True]
    assert summary["n_kept"] == 2 and summary["n_image_tokens"] == 8


def test_paired_benchmark_rejects_empty_and_bad_warmup():
    with pytest.raises(ValueError, match="items"):
        paired_benchmark([], None, None, None, 0.5)
    with pytest.raises(ValueError, match="warmup"):
        paired_benchmark(["a"], None, None, None, 0.5, warmup=-1)


def test_helpers():
    assert normalize_answer("The  Blue car.") == "blue car"
    assert median([1.0, 5.0]) == 3.0
    assert quantile([0.0, 10.0], 0.9) == pytest.approx(9.0)
    with pytest.raises(ValueError):
        median([])
