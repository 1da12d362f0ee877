"""The testbed's accuracy ceiling: the better oracle at each keep ratio, and the share of it.

The oracles (:mod:`vissparse.testbed.oracle`) keep the tokens that show the scene's
objects, which no method can know; the better of the two at a model, keep ratio and
question family is the ceiling there, and every method's accuracy is also reported as
a fraction of it (``of_ceiling``). Rows are :func:`~vissparse.testbed.evaluate.summarize`'s.

Example:
    >>> rows = [{"model": "m", "keep_ratio": 0.1, "family": "all", "scorer": s,
    ...          "accuracy": a} for s, a in [("oracle-objects", 0.6),
    ...          ("oracle-one-per-object", 0.8), ("random", 0.4)]]
    >>> ceilings(rows)[("m", 0.1, "all")]["scorer"]
    'oracle-one-per-object'
    >>> with_ceiling(rows)[2]["of_ceiling"]
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vissparse.testbed.oracle import ORACLES, is_oracle

Key = tuple[str, float, str]


def ceilings(rows: Sequence[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """``(model, keep_ratio, family) ->`` the oracle row with the highest accuracy there.

    On a tie the oracle listed first in :data:`~vissparse.testbed.oracle.ORACLES` wins.
    """
    best: dict[Key, dict[str, Any]] = {}
    oracle_rows = sorted((r for r in rows if is_oracle(r["scorer"])),
                         key=lambda r: ORACLES.index(r["scorer"]))  # fmt: skip
    for r in oracle_rows:
        key = (r["model"], r["keep_ratio"], r["family"])
        if key not in best or r["accuracy"] > best[key]["accuracy"]:
            best[key] = r
    return best


def with_ceiling(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``rows``; where a ceiling exists, with ``ceiling`` and ``of_ceiling``.

    ``ceiling`` is the better oracle's accuracy at the row's model, keep and family;
    ``of_ceiling`` the row's accuracy over it (absent where the ceiling is 0).
    """
    best = ceilings(rows)
    out = []
    for r in rows:
        row = dict(r)
        top = best.get((r["model"], r["keep_ratio"], r["family"]))
        if top is not None:
            row["ceiling"] = top["accuracy"]
            if top["accuracy"] > 0:
                row["of_ceiling"] = r["accuracy"] / top["accuracy"]
        out.append(row)
    return out


def ceiling_table(rows: Sequence[dict[str, Any]], family: str = "all") -> str:
    """Markdown: the ceiling per keep ratio, then every method's accuracy as % of it.

    One model's rows; keep ratios without an oracle row get no column.

    Example:
        >>> rows = [{"model": "m", "keep_ratio": 0.1, "family": "all", "scorer": s,
        ...          "accuracy": a} for s, a in [("oracle-objects", 0.8), ("random", 0.4)]]
        >>> print(ceiling_table(rows))
        | | keep 0.1 |
        |---|---|
        | ceiling: the better oracle | 80.0 (oracle-objects) |
        | random | 50% |
    """
    rows = [r for r in rows if r["family"] == family]
    best = ceilings(rows)
    keeps = sorted({k for (_, k, _) in best})
    models = {m for (m, _, _) in best}
    if len(models) > 1:
        raise ValueError(f"`rows` must hold one model's rows, got {sorted(models)}")
    top = {k: r for (_, k, _), r in best.items()}
    ceiling = [f"{100 * top[k]['accuracy']:.1f} ({top[k]['scorer']})" for k in keeps]
    lines = ["| | " + " | ".join(f"keep {k:g}" for k in keeps) + " |",
             "|---|" + "---|" * len(keeps),
             "| ceiling: the better oracle | " + " | ".join(ceiling) + " |"]  # fmt: skip
    cell = {(r["scorer"], r["keep_ratio"]): r for r in with_ceiling(rows)}
    for scorer in dict.fromkeys(r["scorer"] for r in rows if not is_oracle(r["scorer"])):
        cells = []
        for k in keeps:
            r = cell.get((scorer, k))
            cells.append(f"{100 * r['of_ceiling']:.0f}%" if r and "of_ceiling" in r else "")
        llm = any(r["scorer"] == scorer and r.get("stage") == "llm" for r in rows)
        lines.append(f"| {scorer}{' (in LLM)' if llm else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
