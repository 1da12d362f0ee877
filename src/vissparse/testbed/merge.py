"""Re-measured rows of a few scorers, merged into a recorded ``testbed eval`` table.

A change to one scorer (a new default, a fixed method) needs its rows again, not the
whole table's hour. The re-run evaluates those scorers and ``random`` (their reference for
the paired p-values) on the same questions; :func:`merge_remeasured` checks that the
random rows came out exactly as recorded (same questions, same seeds, same model), swaps
the scorers' rows in place, and records the re-run under ``"remeasured"`` so the tables
can say which rows came from which command.
"""

from __future__ import annotations

from typing import Any

SAME = ("n_questions", "question_seed", "split", "mode", "random_seeds", "models")
DERIVED = ("ceiling", "of_ceiling")  # recomputed from the merged rows by write_results


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["model"], row["keep_ratio"], row["family"]


def _fingerprint(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a random row must reproduce: accuracy, count, per-seed accuracy (``all`` rows)."""
    seeds = row.get("seed_accuracy")
    return (*_key(row), row["accuracy"], row.get("n"), None if seeds is None else tuple(seeds))


def merge_remeasured(old: dict[str, Any], new: dict[str, Any], scorers: list[str],
                     command: str) -> dict[str, Any]:  # fmt: skip
    """``old``'s payload with the rows of ``scorers`` taken from ``new``.

    ``old`` and ``new`` are ``testbed_eval.json`` payloads; ``new`` must hold the random
    rows, equal to ``old``'s in accuracy and per-seed accuracy wherever ``new`` has them,
    and a row of every scorer in ``scorers`` wherever ``old`` had one (and none where
    ``old`` had none). Raises
    ``ValueError`` naming what differs.

    Example:
        >>> row = lambda s, a: {"model": "m", "keep_ratio": 0.1, "family": "all",
        ...                     "scorer": s, "accuracy": a, "seed_accuracy": [a]}
        >>> meta = {"n_questions": 4, "question_seed": 0, "seconds": 9.0, "machine": {}}
        >>> old = {**meta, "results": [row("a", 0.5), row("random", 0.25)]}
        >>> new = {**meta, "results": [row("random", 0.25), row("a", 0.75)]}
        >>> merged = merge_remeasured(old, new, ["a"], "python x.py --scorer a")
        >>> [(r["scorer"], r["accuracy"]) for r in merged["results"]]
        [('a', 0.75), ('random', 0.25)]
        >>> merged["remeasured"][0]["scorers"]
        ['a']
    """
    if "random" in scorers:
        raise ValueError("`scorers` must not hold 'random': it is the check, kept as recorded")
    for key in SAME:
        if old.get(key) != new.get(key):
            raise ValueError(f"the re-run's {key!r} is {new.get(key)!r}, the recorded table's "
                             f"{old.get(key)!r}: re-run it with the table's settings")  # fmt: skip
    recorded = {_fingerprint(r) for r in old["results"] if r["scorer"] == "random"}
    randoms = [r for r in new["results"] if r["scorer"] == "random"]
    if not randoms:
        raise ValueError("the re-run has no random rows: run it with `--scorer random` too")
    for r in randoms:
        if _fingerprint(r) not in recorded:
            raise ValueError(f"random at {_key(r)} gave {r['accuracy']} (per seed "
                             f"{r.get('seed_accuracy')}), not the recorded table's: the "
                             "questions, seeds or model differ, so its paired p-values would "
                             "not compare; re-run the whole table")  # fmt: skip
    fresh = {(r["scorer"], *_key(r)): r for r in new["results"] if r["scorer"] in scorers}
    missing = [k for k in ((r["scorer"], *_key(r)) for r in old["results"]
                           if r["scorer"] in scorers) if k not in fresh]  # fmt: skip
    if missing:
        raise ValueError(f"the re-run lacks rows the table has, first {missing[0]}")
    known = {(r["scorer"], *_key(r)) for r in old["results"]}
    extra = [k for k in fresh if k not in known]
    if extra:
        raise ValueError(f"the re-run has rows the table lacks, first {extra[0]}: re-run "
                         "the whole table to add a scorer or a keep")  # fmt: skip
    rows = [{k: v for k, v in (fresh[(r["scorer"], *_key(r))] if r["scorer"] in scorers
                               else r).items() if k not in DERIVED}
            for r in old["results"]]  # fmt: skip
    note = {"scorers": list(scorers), "command": command, "seconds": new["seconds"],
            "machine": new["machine"]}  # fmt: skip
    return {**old, "results": rows, "remeasured": [*old.get("remeasured", []), note]}


def remeasured_text(payload: dict[str, Any]) -> str:
    """One sentence per re-run recorded in ``payload`` (empty when there was none).

    Example:
        >>> remeasured_text({"remeasured": [{"scorers": ["cosine"], "seconds": 600,
        ...                                  "command": "python b.py --scorer cosine"}]})
        ' Rows of cosine re-measured by `python b.py --scorer cosine` (10 minutes; its random rows reproduced the recorded accuracies exactly).'
    """  # noqa: E501
    return "".join(
        f" Rows of {', '.join(n['scorers'])} re-measured by `{n['command']}` "
        f"({n['seconds'] / 60:.0f} minutes; its random rows reproduced the recorded "
        "accuracies exactly)." for n in payload.get("remeasured", [])
    )  # fmt: skip
