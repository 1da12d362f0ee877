"""Writing testbed results: CSV, JSON, the accuracy-vs-keep plot, markdown tables.

Example:
    >>> rows = [{"model": "m", "scorer": "random", "keep_ratio": 0.1, "family": "all",
    ...          "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "image_tokens": 25.6}]
    >>> print(accuracy_table(rows).splitlines()[2])
    | random | 50.0 [40.0, 60.0] |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vissparse.bench.plots import _pyplot, save_figure
from vissparse.bench.report import write_rows
from vissparse.testbed.ceiling import with_ceiling
from vissparse.testbed.train import train_options, trained_on

# one colour per built-in method (the default cycle repeats after ten); dashed = reference
SCORER_STYLE = {
    "random": dict(color="black", ls="--"),
    "cosine": dict(color="tab:red"),
    "cosine-least": dict(color="tab:blue"),
    "cosine-max": dict(color="tab:orange"),
    "uniform": dict(color="tab:green"),
    "pool": dict(color="tab:olive", ls="--"),
    "divprune": dict(color="tab:purple"),
    "dart": dict(color="tab:brown"),
    "cdpruner": dict(color="tab:pink"),
    "visionzip": dict(color="tab:cyan"),
    "prumerge+": dict(color="tab:gray"),
    "cosine-mean": dict(color="salmon"),
    "downsample": dict(color="darkgreen", ls="--"),
    "mmtok": dict(color="navy"),
    "scope": dict(color="teal"),
    "vispruner": dict(color="indigo"),
    # inside the language model (stage="llm"): dotted
    "fastv": dict(color="tab:red", ls=":"),
    "pdrop": dict(color="tab:blue", ls=":"),
    "text-attn": dict(color="tab:green", ls=":"),
    # the testbed's oracles (they read the scene): the ceiling, dash-dotted
    "oracle-objects": dict(color="goldenrod", ls="-."),
    "oracle-one-per-object": dict(color="darkgoldenrod", ls="-."),
}


def _name(rows: Sequence[dict[str, Any]], scorer: str) -> str:
    """The scorer's name, marked when it prunes inside the language model."""
    llm = any(r["scorer"] == scorer and r.get("stage") == "llm" for r in rows)
    return f"{scorer} (in LLM)" if llm else scorer


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(row: dict[str, Any]) -> str:
    """`` [low, high]`` of a row's 95% interval, in percent."""
    return f" [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"


def _keeps(rows: Sequence[dict[str, Any]]) -> list[float]:
    return sorted({r["keep_ratio"] for r in rows})


def accuracy_table(rows: Sequence[dict[str, Any]], family: str = "all") -> str:
    """Markdown: one row per scorer, one column per keep ratio, ``acc [CI]`` in %.

    A ``*`` marks a scorer that differs from random at p < 0.05 (paired bootstrap).
    """
    rows = [r for r in rows if r["family"] == family]
    keeps = _keeps(rows)
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    cell = {(r["scorer"], r["keep_ratio"]): r for r in rows}
    lines = ["| scorer | " + " | ".join(f"keep {k:g}" for k in keeps) + " |",
             "|---|" + "---|" * len(keeps)]  # fmt: skip
    for scorer in scorers:
        cells = []
        for k in keeps:
            r = cell.get((scorer, k))
            if r is None:
                cells.append("")
                continue
            star = "*" if r.get("vs_random_p_value", 1.0) < 0.05 else ""
            cells.append(f"{_pct(r['accuracy'])}{star}{_ci(r)}")
        lines.append(f"| {_name(rows, scorer)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def family_table(rows: Sequence[dict[str, Any]], keep_ratio: float, families: Sequence[str]) -> str:
    """Markdown: accuracy per scorer (rows) and question family (columns) at one keep."""
    rows = [r for r in rows if r["keep_ratio"] == keep_ratio]
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    cell = {(r["scorer"], r["family"]): r for r in rows}
    cols = ["all", *families]
    lines = ["| scorer | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for scorer in scorers:
        vals = [cell.get((scorer, f)) for f in cols]
        lines.append(
            f"| {_name(rows, scorer)} | "
            + " | ".join(_pct(v["accuracy"]) if v else "" for v in vals)
            + " |"
        )
    return "\n".join(lines)


def blank_table(blank: Sequence[dict[str, Any]], full: Sequence[dict[str, Any]]) -> str:
    """Markdown: unpruned, blank-image (greedy and forced choice) accuracy and chance."""
    acc = {r["family"]: r for r in full if r["keep_ratio"] == 1.0}
    lines = ["| family | unpruned | blank image | blank image, forced choice | chance |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in blank:
        a = acc.get(r["family"])
        forced = (f"{_pct(r['blank_forced'])} [{_pct(r['forced_ci_low'])}, "
                  f"{_pct(r['forced_ci_high'])}]" if "blank_forced" in r else "")  # fmt: skip
        lines.append(f"| {r['family']} | {_pct(a['accuracy']) if a else ''} | "
                     f"{_pct(r['blank_accuracy'])}{_ci(r)} | "
                     f"{forced} | {_pct(r['chance'])} |")  # fmt: skip
    return "\n".join(lines)


def plot_accuracy(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Accuracy against keep ratio, one panel per model.

    A line per scorer with its 95% CI band (all families), chance as a dotted line.

    Example:
        >>> import tempfile
        >>> r = [{"model": "m", "scorer": "cosine", "keep_ratio": k, "family": "all",
        ...       "accuracy": k, "ci_low": k - .1, "ci_high": k, "chance": .1} for k in (.1, 1)]
        >>> plot_accuracy(r, Path(tempfile.mkdtemp()) / "a.png").suffix
        '.png'
    """
    plt = _pyplot()
    rows = [r for r in rows if r["family"] == "all"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models) + 1.6, 4.0), dpi=120,
                             squeeze=False, sharey=True)  # fmt: skip
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in rows if r["model"] == model]
        for scorer in dict.fromkeys(r["scorer"] for r in mine):
            pts = sorted((r for r in mine if r["scorer"] == scorer), key=lambda r: r["keep_ratio"])
            x = [r["keep_ratio"] for r in pts]
            style = SCORER_STYLE.get(scorer, {})
            label = _name(mine, scorer)
            line = ax.plot(x, [r["accuracy"] for r in pts], marker="o", ms=3, label=label, **style)
            ax.fill_between(x, [r["ci_low"] for r in pts], [r["ci_high"] for r in pts],
                            color=line[0].get_color(), alpha=0.15, lw=0)  # fmt: skip
        if mine and "chance" in mine[0]:
            ax.axhline(mine[0]["chance"], color="grey", ls=":", lw=1, label="chance")
        ax.set_xscale("log")
        ax.set_xticks(_keeps(mine), [f"{k:g}" for k in _keeps(mine)])
        ax.set_xlabel("keep_ratio (log scale)")
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (95% bootstrap CI)")
    axes[0][0].set_ylim(0, 1.02)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def write_results(
    rows: Sequence[dict[str, Any]], blank: Sequence[dict[str, Any]], out: str | Path,
    meta: dict[str, Any],
) -> dict[str, Path]:  # fmt: skip
    """``testbed_eval.{csv,json}``, ``testbed_blank.{csv,json}`` and ``testbed_accuracy.png``.

    Where the oracles ran, every row also holds ``ceiling`` and ``of_ceiling``
    (:func:`~vissparse.testbed.ceiling.with_ceiling`).
    """
    rows = with_ceiling(rows)
    paths = write_rows(rows, out, "testbed_eval", extra=meta)
    blank_paths = write_rows(blank, out, "testbed_blank", extra=meta)
    paths["blank_csv"], paths["blank_json"] = blank_paths["csv"], blank_paths["json"]
    paths["png"] = plot_accuracy(rows, Path(out) / "testbed_accuracy.png")
    return paths


def runs_table(runs: Sequence[tuple[str, dict[str, Any], dict[str, Any]]]) -> str:
    """Markdown: one row per training run, its settings and held-out accuracy per family.

    ``runs`` holds ``(name, training, evaluation)``: a run's name, its ``training.json``
    and its ``card_eval.json`` (as ``vissparse testbed train`` and ``card`` write them).
    The ``options`` column lists the run's other training options that differ from the
    default command (see :func:`~vissparse.testbed.train.train_options`).

    Example:
        >>> training = {"family": "llava", "steps": 10, "lr": 0.001, "seed": 0,
        ...             "accelerator": "cpu", "train_seconds": 60.0, "machine": {"cpu_count": 2},
        ...             "lm_relation": True, "lm_relation_late": True}
        >>> evaluation = {"unpruned": [{"family": "all", "accuracy": 0.5, "ci_low": 0.4,
        ...                             "ci_high": 0.6}]}
        >>> print(runs_table([("r", training, evaluation)]).splitlines()[2])
        | r | llava | 10 | 0.001 | 0 |  | CPU, 2 cores | 1.0 | 50.0 [40.0, 60.0] |
    """
    families = list(
        dict.fromkeys(
            r["family"] for _, _, e in runs for r in e["unpruned"] if r["family"] != "all"
        )
    )
    head = ["run", "model", "steps", "lr", "seed", "options", "trained on", "minutes",
            "held out", *families]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, training, evaluation in runs:
        acc = {r["family"]: r for r in evaluation["unpruned"]}
        total = acc["all"]
        options = " ".join(train_options(training, skip=("--steps", "--lr", "--accelerator")))
        cells = [name, training["family"], str(training["steps"]), f"{training['lr']:g}",
                 str(training["seed"]), options, trained_on(training),
                 f"{training['train_seconds'] / 60:.1f}",
                 f"{_pct(total['accuracy'])}{_ci(total)}",
                 *(_pct(acc[f]["accuracy"]) if f in acc else "" for f in families)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# the logged values compared with the shipped run's by ``curves_table``
COMPARED_METRICS = ("train/loss", "train/aux_loss", "val/accuracy")


def read_metrics(path: str | Path) -> dict[tuple[int, str], float]:
    """``(step, metric) -> value`` of every value in a CSV logger's ``metrics.csv``."""
    import csv

    with open(path) as f:
        return {(int(r["step"]), k): float(v) for r in csv.DictReader(f)
                for k, v in r.items() if v and k not in ("epoch", "step")}  # fmt: skip


def curves_table(
    runs: Sequence[tuple[str, str, dict[tuple[int, str], float]]],
    references: dict[str, str] | None = None,
) -> str:
    """Markdown: validation accuracy % at each check, a row per run (and per family logged).

    ``runs`` holds ``(name, family, metrics)`` (see :func:`read_metrics`); a run named
    ``shipped ...`` is the reference of its family, and every other run's row says how
    many of its :data:`COMPARED_METRICS` values equal the reference's at the same step.
    ``references`` gives some runs another run of ``runs`` as their reference, by name
    (a rerun of a checkpoint shipped before the current one); their cell names it.

    Example:
        >>> ref = {(99, "val/accuracy"): 0.5, (9, "train/loss"): 2.0}
        >>> run = {(99, "val/accuracy"): 0.5, (9, "train/loss"): 1.0}
        >>> print(curves_table([("shipped m", "m", ref), ("r", "m", run)]).splitlines()[-1])
        | r | all | 1 of 2 | 50 |
    """
    from vissparse.testbed.questions import FAMILIES

    steps = sorted({s for _, _, m in runs for s, k in m if k == "val/accuracy"})
    head = ["run", "family", "equal to shipped", *map(str, steps)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    shipped = {fam: m for name, fam, m in runs if name.startswith("shipped")}
    by_name = {name: m for name, _, m in runs}
    references = references or {}
    missing = [r for r in references.values() if r not in by_name]
    if missing:
        raise ValueError(f"`references` names {missing[0]!r}, which is not a run of `runs`")
    for name, fam, metrics in runs:
        ref = references.get(name)
        base = by_name[ref] if ref else shipped.get(fam, {})
        same = [k for k in metrics if k[1] in COMPARED_METRICS and k in base]
        equal = sum(abs(metrics[k] - base[k]) < 1e-6 for k in same)
        agree = "" if name.startswith("shipped") else f"{equal} of {len(same)}"
        agree += f" of {ref}" if ref else ""
        for key in ("val/accuracy", *(f"val/accuracy/{f}" for f in FAMILIES)):
            if not any(k == key for _, k in metrics):
                continue
            label = "all" if key == "val/accuracy" else key.rsplit("/", 1)[1]
            cells = [f"{100 * metrics[s, key]:.0f}" if (s, key) in metrics else "" for s in steps]
            lines.append(f"| {name} | {label} | {agree} | " + " | ".join(cells) + " |")
            agree = ""
    return "\n".join(lines)
