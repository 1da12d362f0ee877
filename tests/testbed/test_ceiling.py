"""The testbed's ceiling (the better oracle) and every method's share of it."""

import pytest

from vissparse.testbed.ceiling import ceiling_table, ceilings, with_ceiling
from vissparse.testbed.report import write_results


def _rows():
    acc = {("oracle-objects", 0.1): 0.5, ("oracle-one-per-object", 0.1): 0.8,
           ("oracle-objects", 0.5): 0.9, ("oracle-one-per-object", 0.5): 0.6,
           ("random", 0.1): 0.4, ("random", 0.5): 0.45, ("fastv", 0.5): 0.3}  # fmt: skip
    return [{"model": "m", "family": "all", "scorer": s, "keep_ratio": k, "accuracy": a,
             "ci_low": a - 0.1, "ci_high": a + 0.1, "chance": 0.2}
            for (s, k), a in acc.items()]  # fmt: skip


def test_the_better_oracle_at_each_keep_is_the_ceiling():
    best = ceilings(_rows())
    assert best[("m", 0.1, "all")]["scorer"] == "oracle-one-per-object"
    assert best[("m", 0.5, "all")]["scorer"] == "oracle-objects"
    shares = {(r["scorer"], r["keep_ratio"]): r["of_ceiling"] for r in with_ceiling(_rows())}
    assert shares[("random", 0.1)] == pytest.approx(0.5)
    assert shares[("random", 0.5)] == pytest.approx(0.5)
    assert shares[("oracle-one-per-object", 0.5)] == pytest.approx(2 / 3)
    assert "of_ceiling" not in with_ceiling([r for r in _rows() if r["scorer"] == "random"])[0]


def test_ceiling_table_rows_and_cells():
    lines = ceiling_table(_rows()).splitlines()
    assert lines[0] == "| | keep 0.1 | keep 0.5 |"
    assert (
        lines[2]
        == "| ceiling: the better oracle | 80.0 (oracle-one-per-object) | 90.0 (oracle-objects) |"
    )
    assert lines[3:] == ["| random | 50% | 50% |", "| fastv |  | 33% |"]
    with pytest.raises(ValueError, match="`rows` must hold one model's rows"):
        ceiling_table([*_rows(), {**_rows()[0], "model": "other"}])


def test_written_rows_carry_the_ceiling(tmp_path):
    import json

    write_results(_rows(), [], tmp_path, {})
    rows = json.loads((tmp_path / "testbed_eval.json").read_text())["results"]
    assert {r["scorer"]: r["of_ceiling"] for r in rows if r["keep_ratio"] == 0.1}["random"] == 0.5
    assert "of_ceiling" in (tmp_path / "testbed_eval.csv").read_text().splitlines()[0]
