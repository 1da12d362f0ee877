"""Accuracy against measured speed: the front, the join, the table, the plot, the render."""

import importlib
import sys
from pathlib import Path

import pytest

from vissparse.bench.pareto import join_points, pareto_optimal, pareto_table, plot_pareto

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_front_keeps_exactly_the_undominated_points():
    points = [(1.0, 0.9), (3.0, 0.5), (2.0, 0.5), (3.0, 0.5), (2.5, 0.7), (0.5, 0.95)]
    #          unpruned   equal pair  slower, as good  equal    between   slowest, best
    assert pareto_optimal(points) == [True, True, False, True, True, True]
    assert pareto_optimal([(2.0, 0.6), (2.0, 0.7)]) == [False, True]  # same speed, worse
    assert pareto_optimal([]) == []


def _acc(scorer, keep, accuracy, stage=None, of_ceiling=None):
    row = {"scorer": scorer, "keep_ratio": keep, "accuracy": accuracy}
    if stage:
        row["stage"] = stage
    if of_ceiling is not None:
        row["of_ceiling"] = of_ceiling
    return row


def test_join_matches_scorer_stage_and_keep():
    accuracy = [
        _acc("a", 0.1, 0.6, of_ceiling=0.75),
        _acc("a", 0.5, 0.8),
        _acc("a", 1.0, 0.9),
        _acc("b", 1.0, 0.9),
        _acc("fastv", 0.5, 0.7, "llm"),
        _acc("c", 0.1, 0.2),
    ]
    speed = [
        {"scorer": "a", "keep_ratio": 0.1, "prefill_speedup": 4.0, "stage": "input"},
        {"scorer": "a", "keep_ratio": 0.5, "prefill_speedup": 1.8},
        {"scorer": "fastv", "keep_ratio": 0.5, "prefill_speedup": 1.5, "stage": "llm"},
        {"scorer": "fastv", "keep_ratio": 0.1, "prefill_speedup": 3.0, "stage": "llm"},
    ]
    points = join_points(accuracy, speed)
    got = [(p["method"], p["keep_ratio"], p["prefill_speedup"], p["pareto"]) for p in points]
    assert got == [
        ("a", 0.1, 4.0, True),
        ("a", 0.5, 1.8, True),
        ("unpruned", 1.0, 1.0, True),
        ("fastv (in LLM)", 0.5, 1.5, False),
    ]
    assert points[0]["of_ceiling"] == 0.75  # c has no speed, fastv at 0.1 no accuracy
    # an input-stage speed row never stands in for the in-LLM method's
    alone = join_points([_acc("fastv", 0.5, 0.7, "llm")], [{**speed[2], "stage": "input"}])
    assert alone == []


def test_table_lists_fastest_first_and_marks_the_front():
    points = join_points(
        [_acc("a", 0.1, 0.5, of_ceiling=0.5), _acc("b", 0.1, 0.6)],
        [
            {"scorer": "a", "keep_ratio": 0.1, "prefill_speedup": 3.0},
            {"scorer": "b", "keep_ratio": 0.1, "prefill_speedup": 3.5},
        ],
    )
    assert pareto_table(points).splitlines()[2:] == [
        "| b | 0.1 | 60.0 |  | 3.50x | yes |",
        "| a | 0.1 | 50.0 | 50% | 3.00x |  |",
    ]


def test_plot_is_written(tmp_path):
    points = join_points(
        [_acc("a", k, k) for k in (0.1, 0.5, 1.0)] + [_acc("p", 0.5, 0.4, "llm")],
        [{"scorer": "a", "keep_ratio": k, "prefill_speedup": 1 / k} for k in (0.1, 0.5)]
        + [{"scorer": "p", "keep_ratio": 0.5, "prefill_speedup": 1.2, "stage": "llm"}],
    )
    path = plot_pareto(points, tmp_path / "sub" / "p.png", "t", {"a": {"color": "red"}})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def methods_benchmark(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    yield importlib.import_module("methods_benchmark")
    for name in ("methods_benchmark", "mock_benchmark"):
        sys.modules.pop(name, None)


def test_methods_render_has_ceiling_front_and_plot(methods_benchmark, tmp_path):
    """The render-only path on synthetic rows: ceiling row, % of ceiling, Pareto plot."""
    machine = {
        "processor": "x",
        "cpu_count": 2,
        "torch_threads": 2,
        "torch": "t",
        "transformers": "5",
        "platform": "p",
    }
    rows = []
    for scorer, keep, acc in [
        ("random", 0.1, 0.4),
        ("divprune", 0.1, 0.6),
        ("divprune", 0.5, 0.8),
        ("oracle-objects", 0.1, 0.5),
        ("oracle-one-per-object", 0.1, 0.8),
        ("random", 1.0, 0.9),
    ]:
        rows.append(
            {
                "model": "llava",
                "family": "all",
                "scorer": scorer,
                "keep_ratio": keep,
                "accuracy": acc,
                "ci_low": acc - 0.05,
                "ci_high": acc + 0.05,
            }
        )
    rows.append({**rows[2], "scorer": "fastv", "stage": "llm", "accuracy": 0.7})
    testbed = {"n_questions": 10, "results": rows}
    runs = [
        {
            "config": "llava-1.5-7b",
            "scorer": s,
            "stage": st,
            "keep_ratio": k,
            "prefill_speedup": x,
            "overhead_ms": 1.0,
            "signal_ms": 0.0,
            "prefill_vs_bound": 0.9,
        }
        for s, st, k, x in [
            ("random", "input", 0.1, 4.0),
            ("divprune", "input", 0.1, 3.5),
            ("divprune", "input", 0.5, 1.8),
            ("fastv", "llm", 0.5, 1.4),
        ]
    ]
    speed = {
        "machine": machine,
        "minutes": 1.0,
        "depth_scale": 8,
        "repeats": 1,
        "keeps": [0.1, 0.5],
        "runs": runs,
    }
    text = methods_benchmark.render(speed, testbed, tmp_path)
    lines = text.splitlines()
    assert any(
        line.startswith("| ceiling (better oracle) | ") and "80.0 (oracle-one-per-object)" in line
        for line in lines
    )
    divprune = next(line for line in lines if line.startswith("| divprune | "))
    assert "| 75% | 1.0 | 0.0 | 3.50x | 90% |" in divprune  # 0.6 of the 0.8 ceiling
    assert "| fastv (in LLM) | 0.5 | 70.0 |  | 1.40x |  |" in lines  # dominated by divprune
    assert "| random | 0.1 | 40.0 | 50% | 4.00x | yes |" in lines
    assert not any(line.startswith("| oracle") for line in lines)
    assert (tmp_path / "pareto_llava.png").is_file()
    assert "](benchmarks/results/methods/pareto_llava.png)" in text


def test_merged_speed_rows_replace_their_scorers_and_say_so(methods_benchmark):
    machine = {"processor": "x", "cpu_count": 2, "torch_threads": 2, "torch": "t"}
    meta = {"depth_scale": 8, "repeats": 3, "new_tokens": 1, "keeps": [0.1, 0.5],
            "machine": machine}  # fmt: skip
    old = {**meta, "minutes": 90.0, "runs": [
        {"config": "l", "scorer": "a", "keep_ratio": 0.1, "prefill_speedup": 3.0},
        {"config": "l", "scorer": "b", "keep_ratio": 0.1, "prefill_speedup": 2.0},
        {"config": "q", "scorer": "b", "keep_ratio": 0.1, "prefill_speedup": 1.5}]}  # fmt: skip
    new = {**meta, "command": "python m.py --configs l --scorer b --merge", "minutes": 4.0,
           "runs": [{"config": "l", "scorer": "b", "keep_ratio": 0.1,
                     "prefill_speedup": 2.5}]}  # fmt: skip
    merged = methods_benchmark.merge_runs(old, new)
    got = [(r["config"], r["scorer"], r["prefill_speedup"]) for r in merged["runs"]]
    assert got == [("l", "a", 3.0), ("q", "b", 1.5), ("l", "b", 2.5)]  # q's row kept
    assert merged["minutes"] == 90.0
    assert "Rows of b measured again by `python m.py --configs l --scorer b --merge` (4 min" in (
        methods_benchmark._merged_text(merged))  # fmt: skip
    with pytest.raises(SystemExit, match="repeats is 3, this run's 5"):
        methods_benchmark.merge_runs(old, {**new, "repeats": 5})
    with pytest.raises(SystemExit, match="machine has cpu_count 2, this one 16"):
        methods_benchmark.merge_runs(old, {**new, "machine": {**machine, "cpu_count": 16}})
    older = {k: v for k, v in old.items() if k != "keeps"}  # the earlier format: keep 0.1
    with pytest.raises(SystemExit, match=r"keeps is None, this run's \[0.1, 0.5\]"):
        methods_benchmark.merge_runs(older, new)
    methods_benchmark.merge_runs(older, {**new, "keeps": [0.1]})
