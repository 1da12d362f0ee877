"""Hypothesis properties of the metrics against their functional twins."""

from itertools import pairwise

import matplotlib
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vissparse.metrics import AccuracyDelta, Latency, Speedup
from vissparse.metrics.functional import accuracy_delta, latency_stats, speedup

matplotlib.use("Agg")

latencies = st.lists(st.floats(0.01, 1e4, allow_nan=False), min_size=1, max_size=40)
pairs = st.lists(st.tuples(st.floats(0.01, 1e4), st.floats(0.01, 1e4)), min_size=1, max_size=40)
outcomes = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60)


def chunks(values, cuts):
    cuts = sorted({c % (len(values) + 1) for c in cuts} | {0, len(values)})
    return [values[a:b] for a, b in pairwise(cuts) if b > a]


def feed(metric, kind, values):
    if kind == "speedup":
        metric.update(torch.tensor([b for b, _ in values]), torch.tensor([p for _, p in values]))
    elif kind == "delta":
        metric.update(torch.tensor([c for c, _ in values]), torch.tensor([b for _, b in values]))
    else:
        metric.update(torch.tensor(values))


def twin(kind, values):
    if kind == "speedup":
        return speedup(torch.tensor([b for b, _ in values]), torch.tensor([p for _, p in values]))
    if kind == "delta":
        return accuracy_delta(
            torch.tensor([c for c, _ in values]), torch.tensor([b for _, b in values])
        )
    return latency_stats(torch.tensor(values))


CASES = {
    "speedup": (Speedup, pairs),
    "delta": (AccuracyDelta, outcomes),
    "latency": (Latency, latencies),
}


def close(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k].double(), b[k].double(), rtol=1e-9, atol=1e-9)
    else:
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", CASES)
@given(data=st.data())
def test_update_then_compute_equals_functional(kind, data):
    cls, values_st = CASES[kind]
    values = data.draw(values_st)
    metric = cls()
    for chunk in chunks(values, data.draw(st.lists(st.integers(0, 100), max_size=5))):
        feed(metric, kind, chunk)
    close(metric.compute(), twin(kind, values))


@pytest.mark.parametrize("kind", CASES)
@given(data=st.data())
def test_merging_two_halves_equals_one_pass(kind, data):
    cls, values_st = CASES[kind]
    values = data.draw(values_st)
    cut = data.draw(st.integers(1, len(values))) if len(values) > 1 else 1
    whole, left, right = cls(), cls(), cls()
    feed(whole, kind, values)
    feed(left, kind, values[:cut])
    if values[cut:]:
        feed(right, kind, values[cut:])
        left.merge_state(right)
    close(left.compute(), whole.compute())


@pytest.mark.parametrize("kind", CASES)
@given(data=st.data())
def test_order_does_not_matter(kind, data):
    cls, values_st = CASES[kind]
    values = data.draw(values_st)
    shuffled = data.draw(st.permutations(values))
    a, b = cls(), cls()
    feed(a, kind, values)
    feed(b, kind, shuffled)
    close(a.compute(), b.compute())


@pytest.mark.parametrize("cls", [Speedup, AccuracyDelta, Latency])
def test_metric_class_constants_and_plot(cls):
    assert cls.full_state_update is False and cls.higher_is_better in (True, False)
    metric = cls()
    feed(metric, {Speedup: "speedup", AccuracyDelta: "delta", Latency: "latency"}[cls],
         [(1.0, 0.5), (2.0, 1.0)] if cls is not Latency else [1.0, 2.0])  # fmt: skip
    fig, ax = metric.plot()
    assert fig is not None and ax is not None


def test_functional_errors():
    with pytest.raises(ValueError, match="pair up"):
        speedup(torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="non-empty"):
        accuracy_delta(torch.ones(0), torch.ones(0))
    with pytest.raises(ValueError, match="no measurements"):
        latency_stats(torch.ones(0))
    with pytest.raises(ValueError, match="percentiles"):
        Latency(percentiles=(150,))
