"""The mock-mode user API, exactly as the README shows it."""

import itertools

import pytest
import torch

from vissparse import PruningConfig, VisSparse


@pytest.fixture(scope="module")
def cosine_results():
    # the mock world plants the answer where tokens share the prompt's words, so the
    # seed's plain cosine ("cosine-mean") finds it; the default "cosine" (centred, least
    # similar, chosen on the trained testbed checkpoints) keeps the other tokens there
    model = VisSparse(base_model="mock", keep_ratio=0.10, mock=True, scorer="cosine-mean")
    return model, model.benchmark(n_samples=100, progress=False)


def test_readme_snippet(cosine_results, capsys):
    model = VisSparse(base_model="mock", keep_ratio=0.10, mock=True)
    results = model.benchmark(n_samples=100)
    print(f"Speedup: {results['speedup']:.1f}x, Accuracy delta: {results['accuracy_delta']:.2%}")
    assert capsys.readouterr().out.startswith("Speedup: ")
    keys = {"speedup", "accuracy_delta", "accuracy", "baseline_accuracy", "latency_ms",
            "baseline_latency_ms", "keep_ratio", "n_samples", "scorer"}  # fmt: skip
    assert keys <= results.keys()
    assert results["n_samples"] == 100 and results["keep_ratio"] == 0.10
    # mock mode's default is the plain cosine its answer rule is built on
    assert results["scorer"] == "cosine-mean"
    assert results["accuracy_delta"] <= 0.10


def test_mock_default_scorer_only_when_none_is_given():
    assert VisSparse(base_model="mock", mock=True).config.scorer == "cosine-mean"
    assert VisSparse(base_model="mock", mock=True, scorer="cosine").config.scorer == "cosine"
    assert PruningConfig().scorer == "cosine"


def test_every_call_is_recorded(cosine_results):
    model, results = cosine_results
    assert len(model.records) == len(results["records"]) == 100
    for record in results["records"]:
        assert {"accuracy", "latency_ms", "speedup", "baseline_latency_ms"} <= record.keys()
        assert record["latency_ms"] > 0 and record["n_kept"] == 103
    acc = sum(r["accuracy"] for r in results["records"]) / 100
    assert acc == results["accuracy"]
    base = sum(r["baseline_correct"] for r in results["records"]) / 100
    assert results["accuracy_delta"] == pytest.approx(base - acc)


def test_random_scorer_is_clearly_worse_than_cosine(cosine_results):
    _, cosine = cosine_results
    random = VisSparse(base_model="mock", keep_ratio=0.10, mock=True, scorer="random").benchmark(
        n_samples=100, progress=False
    )
    assert random["baseline_accuracy"] == cosine["baseline_accuracy"]  # same samples
    assert cosine["accuracy"] - random["accuracy"] >= 0.15


def test_keep_ratio_one_costs_nothing():
    results = VisSparse(base_model="mock", keep_ratio=1.0, mock=True).benchmark(
        n_samples=30, progress=False
    )
    assert results["accuracy_delta"] == 0
    assert all(r["answer"] == r["baseline_answer"] for r in results["records"])
    assert 0.6 < results["speedup"] < 1.6  # same work on both sides; wide band for noisy CI


def test_lower_keep_ratio_is_faster(cosine_results):
    _, low = cosine_results
    high = VisSparse(base_model="mock", keep_ratio=0.5, mock=True).benchmark(
        n_samples=30, progress=False
    )
    assert low["speedup"] > 1.5 * high["speedup"]
    assert high["speedup"] > 1.0


def test_mock_errors():
    with pytest.raises(ValueError, match="mock=True"):
        VisSparse(base_model="mock")
    with pytest.raises(ValueError, match="base_model='mock'"):
        VisSparse(base_model="Qwen/Qwen2-VL-7B", mock=True)
    with pytest.raises(ValueError, match="keep_ratio"):
        VisSparse(base_model="mock", mock=True, keep_ratio=0.01)
    model = VisSparse(base_model="mock", mock=True, dim=32, n_tokens=64)
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="n_samples"):
            model.benchmark(n_samples=bad)
    with pytest.raises(TypeError, match="unknown mock options"):
        VisSparse(base_model="mock", mock=True, torch_dtype="bfloat16")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [(lambda vs: vs.sweep(0.5), TypeError,
      "`keep_ratios` must be a list of keep ratios, got 0.5 (for one keep ratio, pass a list of "
      "one)"),
     (lambda vs: vs.sweep("0.5"), TypeError, "`keep_ratios` must be a list of keep ratios"),
     (lambda vs: vs.sweep([]), ValueError, "`keep_ratios` must hold at least one keep ratio"),
     (lambda vs: vs.benchmark(prune=False), TypeError,
      "`prune` is not an option of benchmark(): it runs every sample both unpruned and pruned"),
     (lambda vs: vs.benchmark(generate_kwargs=[1]), TypeError,
      "`generate_kwargs` is not an argument of benchmark(): pass generate options as keywords, "
      "e.g. benchmark(samples=..., max_new_tokens=8)"),
     (lambda vs: vs.benchmark(max_new_tokens=4), TypeError,
      "mock mode takes no generate options, got ['max_new_tokens']; they apply to HuggingFace "
      "models"),
     (lambda vs: vs.benchmark(samples=[{"image": 0, "prompt": "?", "answer": "red"}]), ValueError,
      "`samples` is for HuggingFace models: the mock draws its own synthetic samples (set "
      "`n_samples` and `seed`)"),
     (lambda vs: vs.benchmark(warmup=-1), ValueError, "`warmup` must be an int >= 0, got -1"),
     (lambda vs: vs.benchmark(seed="0"), TypeError, "`seed` must be an int, got '0'"),
     (lambda vs: vs.tune(target_speedup=True), ValueError,
      "`target_speedup` must be a number > 0, got True"),
     (lambda vs: vs.tune(target_speedup=float("nan")), ValueError,
      "`target_speedup` must be a number > 0, got nan"),
     (lambda vs: vs.tune(max_accuracy_drop=True), ValueError,
      "`max_accuracy_drop` must be a number in [0, 1], got True"),
     (lambda vs: vs.tune(max_accuracy_drop=0.1, step=0), ValueError, "`step` must be in"),
     (lambda vs: vs.tune(max_accuracy_drop=0.1, samples=[]), ValueError,
      "`samples` is for HuggingFace models"),
     (lambda vs: vs.sweep([0.5], on_row=1), TypeError, "`on_row` must be a function")],
)  # fmt: skip
def test_benchmark_arguments_are_checked_first_in_one_line(monkeypatch, call, error, message):
    from vissparse.mock.pipeline import MockPipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a sample ran before the arguments were checked")

    monkeypatch.setattr(MockPipeline, "run", refuse)
    vs = VisSparse(base_model="mock", mock=True, dim=32, n_tokens=64)
    with pytest.raises(error) as err:
        call(vs)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert vs.records == []


def test_generate_in_mock_mode():
    model = VisSparse(base_model="mock", mock=True)
    sample = model.pipeline.samples(1, seed=5)[0]
    assert model.generate(image=sample.image_tokens, prompt=sample.prompt) == sample.answer


def test_mock_model_leaves_the_global_rng_alone():
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    VisSparse(base_model="mock", mock=True, dim=32, n_tokens=64)
    assert torch.equal(torch.rand(3), expected)


def test_random_baseline_reproduces_whatever_ran_before():
    def random_vs(keep=0.10):
        return VisSparse(base_model="mock", keep_ratio=keep, mock=True, scorer="random")

    model = random_vs()
    first = model.benchmark(n_samples=30, seed=0, progress=False)
    again = model.benchmark(n_samples=30, seed=0, progress=False, warmup=7)
    other = random_vs().benchmark(n_samples=30, seed=0, progress=False, warmup=0)
    answers = [[r["answer"] for r in res["records"]] for res in (first, again, other)]
    assert first["accuracy"] == again["accuracy"] == other["accuracy"]
    assert answers[0] == answers[1] == answers[2]
    # the masks themselves: a pure function of the sample, nested across keep ratios
    samples = model.pipeline.samples(5, seed=0)

    def masks(vs):
        return [vs.pipeline.run(s.image_tokens, s.prompt).keep_mask for s in samples]

    fresh = masks(random_vs())
    assert all(torch.equal(a, b) for a, b in zip(masks(model), fresh, strict=True))
    assert any(not torch.equal(a, b) for a, b in itertools.pairwise(fresh))
    wide = masks(random_vs(0.25))
    assert all(bool((n <= w).all()) for n, w in zip(fresh, wide, strict=True))


METHODS = ["pool", "cosine-max", "uniform", "divprune", "dart", "cdpruner"]


@pytest.mark.parametrize("scorer", METHODS)
def test_every_method_runs_by_name_in_mock_mode(scorer):
    model = VisSparse(base_model="mock", keep_ratio=0.10, mock=True, scorer=scorer)
    results = model.benchmark(n_samples=4, progress=False, warmup=0)
    assert results["scorer"] == scorer
    assert all(r["n_kept"] == 103 for r in results["records"])  # ceil(0.1 * 1024)
    assert results["effective_keep_ratio"] == 103 / 1024


def test_a_method_that_needs_the_vision_encoder_is_refused_in_mock_mode():
    with pytest.raises(ValueError, match="vision_attention"):
        VisSparse(base_model="mock", keep_ratio=0.10, mock=True, scorer="visionzip")
