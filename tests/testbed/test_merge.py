import pytest

from vissparse.testbed.merge import merge_remeasured, remeasured_text

META = {"n_questions": 8, "question_seed": 0, "split": "test", "mode": "drop",
        "random_seeds": 2, "models": {"m": "dir"}, "seconds": 60.0,
        "machine": {"cpu": 2}}  # fmt: skip


def _row(scorer, keep, accuracy, family="all", seeds=None):
    row = {"model": "m", "scorer": scorer, "keep_ratio": keep, "family": family,
           "accuracy": accuracy, "n": 8, "ceiling": 0.9, "of_ceiling": accuracy / 0.9}  # fmt: skip
    if family == "all":  # as the eval writes them: per-seed accuracy on the `all` rows only
        row["seed_accuracy"] = seeds or [accuracy]
    return row


def _table():
    return {**META, "results": [
        _row("random", 0.1, 0.4, seeds=[0.3, 0.5]), _row("random", 0.1, 0.5, "count"),
        _row("a", 0.1, 0.2), _row("a", 0.1, 0.1, "count"), _row("b", 0.1, 0.6),
        _row("random", 0.5, 0.7, seeds=[0.7, 0.7]), _row("a", 0.5, 0.5), _row("b", 0.5, 0.8),
    ]}  # fmt: skip


def _rerun(**changes):
    rows = [_row("random", 0.1, 0.4, seeds=[0.3, 0.5]), _row("random", 0.1, 0.5, "count"),
            _row("a", 0.1, 0.35), _row("a", 0.1, 0.25, "count"),
            _row("random", 0.5, 0.7, seeds=[0.7, 0.7]), _row("a", 0.5, 0.55)]  # fmt: skip
    return {**META, "seconds": 12.0, **changes, "results": rows}


def test_only_the_named_scorers_rows_change_and_keep_their_place():
    merged = merge_remeasured(_table(), _rerun(), ["a"], "python t.py --scorer a")
    got = [(r["scorer"], r["keep_ratio"], r["accuracy"]) for r in merged["results"]]
    assert got == [("random", 0.1, 0.4), ("random", 0.1, 0.5), ("a", 0.1, 0.35),
                   ("a", 0.1, 0.25), ("b", 0.1, 0.6), ("random", 0.5, 0.7), ("a", 0.5, 0.55),
                   ("b", 0.5, 0.8)]  # fmt: skip
    assert all("of_ceiling" not in r for r in merged["results"])  # recomputed on writing
    assert merged["seconds"] == 60.0 and merged["remeasured"] == [
        {"scorers": ["a"], "command": "python t.py --scorer a", "seconds": 12.0,
         "machine": {"cpu": 2}}]  # fmt: skip
    again = merge_remeasured(merged, _rerun(), ["a"], "second")
    assert [n["command"] for n in again["remeasured"]] == ["python t.py --scorer a", "second"]
    assert "Rows of a re-measured by `python t.py --scorer a` (0 minutes" in remeasured_text(merged)


def test_a_random_row_that_differs_refuses_the_merge():
    rerun = _rerun()
    rerun["results"][0] = _row("random", 0.1, 0.4, seeds=[0.5, 0.3])  # same mean, other seeds
    with pytest.raises(ValueError, match=r"gave 0.4 \(per seed \[0.5, 0.3\]\), not the recorded"):
        merge_remeasured(_table(), rerun, ["a"], "c")
    rerun = _rerun()
    rerun["results"][1] = _row("random", 0.1, 0.625, "count")  # a family row, no seeds
    with pytest.raises(ValueError, match=r"random at \('m', 0.1, 'count'\) gave 0.625"):
        merge_remeasured(_table(), rerun, ["a"], "c")


@pytest.mark.parametrize(("rerun", "scorers", "match"), [
    (_rerun(n_questions=9), ["a"], "'n_questions' is 9, the recorded table's 8"),
    (_rerun(), ["random"], "must not hold 'random'"),
    (_rerun(), ["b"], "lacks rows the table has, first \\('b', 'm', 0.1, 'all'\\)"),
    ({**META, "results": [_row("a", 0.1, 0.3)]}, ["a"], "no random rows"),
    ({**_rerun(), "results": [*_rerun()["results"], _row("a", 0.25, 0.4)]}, ["a"],
     "has rows the table lacks, first \\('a', 'm', 0.25, 'all'\\)"),
])  # fmt: skip
def test_errors_say_what_differs(rerun, scorers, match):
    with pytest.raises(ValueError, match=match):
        merge_remeasured(_table(), rerun, scorers, "c")
