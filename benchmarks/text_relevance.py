"""Testbed accuracy of the cosine scorer's text-relevance options (issue 34, items 2-3).

Runs the testbed evaluation (:mod:`vissparse.testbed.evaluate`: 1000 held-out questions,
drop mode, top-k) on both shipped checkpoints at keep 0.10 and 0.25 for a grid of
:class:`~vissparse.strategies.cosine.CosineScorer` options (which words, how they are
combined, centred image tokens, direction), with the random scorer over 3 seeds as the
reference and the evaluation's paired bootstrap against it. Writes
``text_relevance.json`` and ``text_relevance.md`` under ``--out`` and, with
``--readme``, puts the table between the ``text-relevance-results`` markers.

    python benchmarks/text_relevance.py --out benchmarks/results/text_relevance
    python benchmarks/text_relevance.py --render-only --readme README.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from mock_benchmark import publish

from vissparse.bench.report import machine_description
from vissparse.strategies.cosine import CosineScorer
from vissparse.strategies.registry import build_scorer
from vissparse.testbed.checkpoints import shipped_families
from vissparse.testbed.evaluate import (
    RANDOM_SEEDS,
    Run,
    answer_all,
    correctness,
    load_testbed_model,
    pipeline_for,
    run_scorers,
    summarize_run,
)
from vissparse.testbed.questions import make_questions

CHECKPOINTS = Path("src/vissparse/testbed/checkpoints")
KEEPS = (0.1, 0.25)
MARKER = "text-relevance-results"
P_SIGNIFICANT = 0.05


# measured first (a run cut short still answers issue 34's question), then the rest
PRIORITY = (
    "all-mean-centred-least", "content-max-centred-least", "content-mean-centred-least",
    "content-softmax-centred-least", "content-softmax", "content-max", "content-mean",
    "all-mean-least", "all-mean", "all-max", "all-mean-centred", "content-mean-least",
)  # fmt: skip


def option_grid() -> dict[str, dict[str, Any]]:
    """The options measured, by label: words x aggregate x centre x direction.

    In :data:`PRIORITY` order, then the rest of the grid.

    Example:
        >>> grid = option_grid()
        >>> len(grid), grid["content-max-centred-least"]["aggregate"], list(grid)[0]
        (24, 'max', 'all-mean-centred-least')
    """
    grid = {}
    for words, aggregate, centre, largest in itertools.product(
        ("all", "content"), ("mean", "max", "softmax"), (False, True), (True, False)
    ):
        label = f"{words}-{aggregate}{'-centred' if centre else ''}{'' if largest else '-least'}"
        grid[label] = {"words": words, "aggregate": aggregate, "centre": centre,
                       "largest": largest}  # fmt: skip
    order = [*PRIORITY, *(label for label in grid if label not in PRIORITY)]
    return {label: grid[label] for label in order}


def measure(models: list[str], n: int, labels: list[str], out: Path) -> list[dict[str, Any]]:
    """Accuracy rows (family ``"all"``) of random and every option, saved as they come.

    A run resumes from ``out``'s JSON (same ``n``): measured options are not measured
    again, and the random reference's per-question scores are read back.
    """
    grid = option_grid()
    questions = make_questions(n, seed=0, split="test")
    meta = {"n_questions": n, "question_seed": 0, "split": "test", "mode": "drop",
            "random_seeds": list(RANDOM_SEEDS), "keep_ratios": list(KEEPS),
            "machine": machine_description()}  # fmt: skip
    rows, randoms = _resume(out, n)
    done = {(r["model"], r["keep_ratio"], r["scorer"]) for r in rows}
    start = time.perf_counter()
    loaded = {name: load_testbed_model(CHECKPOINTS / name) for name in models}
    for keep in KEEPS:  # keep 0.10 first: a run cut short still has the options there
        for label in labels:
            for model_name, (model, processor) in loaded.items():
                key = f"{model_name}@{keep:g}"
                if key not in randoms:
                    (run,) = run_scorers(model, processor, questions, ["random"], [keep],
                                         RANDOM_SEEDS, progress=False)  # fmt: skip
                    randoms[key] = run
                    rows += _all(summarize_run(model_name, run, None, questions))
                random = randoms[key]
                if (model_name, keep, label) in done:
                    continue
                scorer = build_scorer(label) if label not in grid else CosineScorer(**grid[label])
                pipe = pipeline_for(model, processor, scorer, keep)
                texts, kept, total = answer_all(pipe, questions)
                scores = correctness(texts, questions)
                run = Run(label, keep, scores, kept, total, [float(scores.mean())])
                new = _all(summarize_run(model_name, run, random, questions))
                rows += [{**row, "options": grid.get(label, {})} for row in new]
                seconds = round(time.perf_counter() - start, 1)
                _save(out, rows, randoms, {**meta, "seconds": seconds, "partial": True})
                print(f"{model_name} keep {keep:g} {label}: {rows[-1]['accuracy']:.3f}",
                      flush=True)  # fmt: skip
    _save(out, rows, randoms, {**meta, "seconds": round(time.perf_counter() - start, 1)})
    return rows


def _resume(out: Path, n: int) -> tuple[list[dict[str, Any]], dict[str, Run]]:
    path = out / "text_relevance.json"
    if not path.is_file():
        return [], {}
    saved = json.loads(path.read_text())
    if saved["meta"]["n_questions"] != n:
        raise SystemExit(f"{path} holds a run on {saved['meta']['n_questions']} questions")
    randoms = {}
    for key, scores in saved.get("random_scores", {}).items():
        keep = key.split("@")[1]
        a = np.array(scores, dtype=np.float64)
        randoms[key] = Run("random", float(keep), a, a * 0, a * 0)
    return saved["results"], randoms


def _all(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row["family"] == "all"]


def _save(out: Path, rows: list[dict[str, Any]], randoms: dict[str, Run],
          meta: dict[str, Any]) -> None:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    scores = {key: run.scores.tolist() for key, run in randoms.items()}
    data = {"meta": meta, "results": rows, "random_scores": scores}
    (out / "text_relevance.json").write_text(json.dumps(data, indent=1) + "\n")


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The markdown table: accuracy per option, model and keep, beside random.

    A cell is ``accuracy (difference to random, in points)``; ``*`` marks a paired
    bootstrap p-value below 0.05.

    Example:
        >>> row = {"model": "m", "scorer": "random", "keep_ratio": 0.1, "accuracy": 0.4}
        >>> other = {**row, "scorer": "x", "accuracy": 0.5, "vs_random_diff": 0.1,
        ...          "vs_random_p_value": 0.01}
        >>> print(render([row, other], {"n_questions": 9}).splitlines()[-1])
        | `x` | 50.0 (+10.0*) |
    """
    models = list(dict.fromkeys(r["model"] for r in rows))
    keeps = sorted({r["keep_ratio"] for r in rows})
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    cell = {(r["model"], r["keep_ratio"], r["scorer"]): r for r in rows}
    heads = [f"{m} {k:.2f}" for m in models for k in keeps]
    lines = [
        f"Testbed accuracy (%) at keep 0.10 and 0.25, {meta.get('n_questions')} held-out "
        "questions, drop mode, top-k; random is the mean over 3 seeds; in brackets the "
        "paired difference to random in points, `*` where the paired bootstrap p < 0.05. "
        "Options: words (`all` prompt tokens or `content` words), aggregate (`mean` "
        "embedding, per-word `max`, per-word `softmax` mass at temperature 0.02), "
        "`centred` image tokens, `least` = negated cosine. "
        "Made by `benchmarks/text_relevance.py`.",
        "",
        "| option | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]
    for scorer in scorers:
        cells = []
        for m in models:
            for k in keeps:
                r = cell.get((m, k, scorer))
                cells.append("" if r is None else _cell(r))
        lines.append(f"| `{scorer}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any]) -> str:
    acc = f"{100 * row['accuracy']:.1f}"
    if "vs_random_diff" not in row:
        return acc
    star = "*" if row["vs_random_p_value"] < P_SIGNIFICANT else ""
    return f"{acc} ({100 * row['vs_random_diff']:+.1f}{star})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/text_relevance"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--model", action="append", help="a shipped checkpoint (default: all)")
    parser.add_argument("--option", action="append",
                        help="a grid label or a registered scorer (default: the grid)")  # fmt: skip
    parser.add_argument("--readme", type=Path, help="also put the table into this README")
    parser.add_argument("--render-only", action="store_true",
                        help="rebuild the markdown from an earlier run's JSON")  # fmt: skip
    parser.add_argument(
        "--merge",
        type=Path,
        action="append",
        help="join the JSON of these output folders (one model each) into --out",
    )
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads((d / "text_relevance.json").read_text()) for d in args.merge]
        joined = {
            "meta": {**parts[0]["meta"], "partial": any(p["meta"].get("partial") for p in parts)},
            "results": [row for p in parts for row in p["results"]],
            "random_scores": {k: v for p in parts for k, v in p["random_scores"].items()},
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "text_relevance.json").write_text(json.dumps(joined, indent=1) + "\n")
        args.render_only = True
    if args.render_only:
        saved = json.loads((args.out / "text_relevance.json").read_text())
        rows, meta = saved["results"], saved["meta"]
    else:
        models = args.model or list(shipped_families())
        labels = args.option or list(option_grid())
        rows = measure(models, args.n, labels, args.out)
        meta = json.loads((args.out / "text_relevance.json").read_text())["meta"]
    publish(render(rows, meta), args.out / "text_relevance.md", args.readme, MARKER)


if __name__ == "__main__":
    main()
