"""Every registered method side by side: testbed accuracy against measured CPU speed.

For each registered input-stage scorer (the downsampling baseline included where it is
registered and the family takes it), runs ``vissparse bench --model-config`` at keep
0.05, 0.1, 0.25 and 0.5 on the shape-faithful ``llava-1.5-7b`` and ``qwen2-vl-7b``
configs (paired baseline vs pruned, medians), and the in-LLM stage (fastv, pdrop,
text-attn, at the testbed eval's layers) at the same AVERAGE image tokens per layer. It
joins the result with the testbed accuracy that ``make bench-testbed`` wrote
(``benchmarks/results/testbed/testbed_eval.json``, whose oracle rows give the ceiling)
and writes, per testbed model, a table ranked by accuracy at keep 0.1, the Pareto plot
(accuracy against measured prefill speedup, every method over its keeps) and the
Pareto table, between the README's ``methods-results`` markers. A measured row takes
about 30 s at the default depth; each prints a progress line.

    python benchmarks/methods_benchmark.py --out benchmarks/results/methods --readme README.md
    python benchmarks/methods_benchmark.py --out benchmarks/results/methods --render-only
    python benchmarks/methods_benchmark.py --out benchmarks/results/methods --readme README.md \
        --scorer cosine --merge    # only cosine's rows again, the others kept as recorded
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_benchmark import publish

from vissparse.bench.model_bench import check_model_bench, run_model_bench
from vissparse.bench.model_configs import MODEL_CONFIGS
from vissparse.bench.pareto import join_points, pareto_table, plot_pareto
from vissparse.bench.report import machine_description, machine_name
from vissparse.llm.schedule import schedule_for_average
from vissparse.strategies import SCORERS, build_scorer
from vissparse.strategies.base import reads_llm_attention
from vissparse.testbed.ceiling import ceilings, with_ceiling
from vissparse.testbed.llm_rows import llm_layers as testbed_llm_layers
from vissparse.testbed.models import TESTBED_LACKS, testbed_scorers
from vissparse.testbed.report import SCORER_STYLE

# testbed model -> the shape-faithful config of the same family
CONFIG_FOR = {"llava": "llava-1.5-7b", "qwen2_vl": "qwen2-vl-7b"}
KEEPS = (0.05, 0.1, 0.25, 0.5)
RANK_KEEP = 0.1  # the first table is ranked by accuracy (and shows speed) at this keep
REFERENCES = ("random", "pool", "downsample")
RESULTS = "benchmarks/results/methods"


def input_scorers() -> list[str]:
    """The registered methods that prune before the language model (testbed-runnable)."""
    return [s for s in testbed_scorers() if not reads_llm_attention(build_scorer(s))]


def llm_scorers() -> list[str]:
    """The registered methods that prune inside the language model."""
    return [s for s in SCORERS.names() if reads_llm_attention(build_scorer(s))]


def llm_layers(scorer: str, text_layers: int) -> tuple[int, ...]:
    """Where ``scorer`` prunes in a ``text_layers``-layer model, as in the testbed eval.

    :func:`vissparse.testbed.llm_rows.llm_layers`: speed and accuracy are then of the same
    schedule (both configs have 4 language-model layers at the default depth / 8, as the
    testbed models do).
    """
    return testbed_llm_layers(scorer, text_layers)


def _wanted(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The input-stage and in-LLM scorers to measure; unregistered names skipped, said so."""
    names = args.scorer or [*input_scorers(), *llm_scorers()]
    for name in names:
        if name not in SCORERS.names():
            print(f"skipped {name}: not a registered scorer in this version")
        elif name in TESTBED_LACKS:
            print(f"skipped {name}: no testbed accuracy, {TESTBED_LACKS[name]}")
    known = [n for n in names if n in SCORERS.names() and n not in TESTBED_LACKS]
    return ([n for n in known if n not in llm_scorers()], [n for n in known if n in llm_scorers()])


def _usable(config: str, scorers: list[str], args: argparse.Namespace) -> list[str]:
    """The scorers ``config`` takes (checked on a weightless model); refusals printed."""
    usable = []
    for scorer in scorers:
        try:
            check_model_bench(config, args.keep, "float32", args.new_tokens, args.repeats,
                              1, args.depth_scale, "sdpa", [scorer], "topk", "input",
                              None)  # fmt: skip
        except ValueError as err:
            print(f"skipped {scorer} on {config}: {err}")
            continue
        usable.append(scorer)
    return usable


def _speed_row(config: str, row: dict[str, Any], keep: float) -> dict[str, Any]:
    keys = ("scorer", "stage", "n_kept", "n_image_tokens", "avg_image_tokens", "prefill_speedup",
            "flop_speedup_bound", "prefill_vs_bound", "overhead_ms", "signal_ms")  # fmt: skip
    return {"config": config, "keep_ratio": keep, "final_keep_ratio": row["keep_ratio"],
            **{k: row.get(k) for k in keys}}  # fmt: skip


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Model-bench every scorer on every config at every keep in ``args.keep``."""
    runs: list[dict[str, Any]] = []
    start = time.perf_counter()
    inputs, inside = _wanted(args)

    def progress(config: str, average: dict[float, float] | None = None) -> Any:
        """An ``on_row``; ``average`` maps an in-LLM final keep to its average keep."""

        def show(report: dict[str, Any]) -> None:
            row = report["results"][-1]
            keep = (average or {}).get(row["keep_ratio"], row["keep_ratio"])
            runs.append(_speed_row(config, row, keep))
            r = runs[-1]
            minutes = (time.perf_counter() - start) / 60
            print(f"[{len(runs)}, {minutes:.1f} min] {config} {r['scorer']} ({r['stage']}) "
                  f"keep {r['keep_ratio']:g}: prefill {r['prefill_speedup']:.2f}x, "
                  f"overhead {r['overhead_ms']:.1f} ms", flush=True)  # fmt: skip

        return show

    common = dict(device="cpu", dtype="float32", new_tokens=args.new_tokens,
                  repeats=args.repeats, depth_scale=args.depth_scale, progress=False)  # fmt: skip
    for config in args.configs:
        usable = _usable(config, inputs, args)
        if usable:
            run_model_bench(config, list(args.keep), scorer=usable, on_row=progress(config),
                            **common)  # type: ignore[arg-type]  # fmt: skip
        _, text_layers = MODEL_CONFIGS[config].depths(args.depth_scale)
        for scorer in inside:
            layers = llm_layers(scorer, text_layers)
            if layers[-1] >= text_layers:
                print(f"skipped {scorer} on {config}: it prunes at layer {layers[-1]}, beyond "
                      f"the {text_layers} layers at depth / {args.depth_scale:g}")  # fmt: skip
                continue
            average = {}  # final keep -> average keep: equal image tokens per layer
            for keep in args.keep:
                schedule = schedule_for_average(layers, text_layers, keep)
                if schedule is None:
                    print(f"skipped {scorer} on {config} at keep {keep:g}: its layers before "
                          f"{layers[0]} alone see more than that on average")  # fmt: skip
                    continue
                average[schedule.keep_ratio] = keep
            if average:
                run_model_bench(config, list(average), scorer=scorer, stage="llm",
                                layer=layers if len(layers) > 1 else layers[0],
                                on_row=progress(config, average), **common)  # type: ignore[arg-type]  # fmt: skip
    return {
        "command": " ".join(["python benchmarks/methods_benchmark.py", *sys.argv[1:]]),
        "machine": machine_description(), "depth_scale": args.depth_scale,
        "repeats": args.repeats, "new_tokens": args.new_tokens, "keeps": list(args.keep),
        "minutes": (time.perf_counter() - start) / 60, "runs": runs,
    }  # fmt: skip


MACHINE_KEYS = ("processor", "cpu_count", "torch_threads", "torch", "transformers")


def merge_runs(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old``'s speed rows with those ``new`` measured (config and scorer) replaced.

    Both runs must share depth, repeats, new tokens, keeps and machine, so that their
    rows compare; ``new``'s command and minutes are recorded under ``"merged"``.

    Example:
        >>> meta = {"depth_scale": 8, "repeats": 3, "new_tokens": 1, "keeps": [0.1],
        ...         "machine": {"cpu_count": 2}}
        >>> old = {**meta, "runs": [{"config": "c", "scorer": "a"},
        ...                         {"config": "c", "scorer": "b", "v": 1}]}
        >>> new = {**meta, "runs": [{"config": "c", "scorer": "b", "v": 2}],
        ...        "command": "m", "minutes": 1}
        >>> [r.get("v") for r in merge_runs(old, new)["runs"]]
        [None, 2]
    """
    for key in ("depth_scale", "repeats", "new_tokens", "keeps"):
        if old.get(key, [RANK_KEEP] if key == "keeps" else None) != new.get(key):
            raise SystemExit(f"--merge: the recorded run's {key} is {old.get(key)!r}, this "
                             f"run's {new.get(key)!r}: give the same settings")  # fmt: skip
    for key in MACHINE_KEYS:
        if old["machine"].get(key) != new["machine"].get(key):
            raise SystemExit(f"--merge: the recorded run's machine has {key} "
                             f"{old['machine'].get(key)!r}, this one {new['machine'].get(key)!r}: "
                             "speed rows of two machines do not compare")  # fmt: skip
    measured = {(r["config"], r["scorer"]) for r in new["runs"]}
    runs = [r for r in old["runs"] if (r["config"], r["scorer"]) not in measured] + new["runs"]
    note = {"scorers": sorted({s for _, s in measured}), "command": new["command"],
            "minutes": new["minutes"]}  # fmt: skip
    return {**old, "runs": runs, "merged": [*old.get("merged", []), note]}


def _merged_text(speed: dict[str, Any]) -> str:
    return "".join(f" Rows of {', '.join(n['scorers'])} measured again by `{n['command']}` "
                   f"({n['minutes']:.0f} minutes, same machine and settings) and merged in."
                   for n in speed.get("merged", []))  # fmt: skip


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _acc_cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    star = "*" if r.get("vs_random_p_value", 1.0) < 0.05 else ""
    return f"{_pct(r['accuracy'])}{star} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"


def _speed_gaps(speed: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """What the speed run lacks against the accuracy rows, said in the caption.

    Example:
        >>> _speed_gaps({"runs": [{"scorer": "a"}]}, [{"scorer": "a"}, {"scorer": "b"}])[:48]
        ' This speed JSON is of an earlier format (one ke'
    """
    measured = {r["scorer"] for r in speed["runs"]}
    missing = sorted({r["scorer"] for r in rows if not r["scorer"].startswith("oracle")}
                     - measured)  # fmt: skip
    text = ""
    if "keeps" not in speed:
        text += (" This speed JSON is of an earlier format (one keep, written before the "
                 "cdpruner, visionzip and prumerge+ defaults followed the released code; "
                 "the earlier defaults ran).")  # fmt: skip
    if missing:
        text += f" No speed row in this run for: {', '.join(missing)}."
    if text:
        text += " `make bench-methods` measures every row again."
    return text


def made_by(command: str) -> str:
    """The run's source as a caption names it: ``make bench-methods`` for that target's call.

    Example:
        >>> made_by("python benchmarks/methods_benchmark.py --out " + RESULTS + " --readme R.md")
        'make bench-methods'
        >>> made_by("python benchmarks/methods_benchmark.py --scorer random")
        'python benchmarks/methods_benchmark.py --scorer random'
    """
    args = command.split()[2:]
    if "--readme" in args:
        at = args.index("--readme")
        del args[at : at + 2]
    return "make bench-methods" if args in ([], ["--out", RESULTS]) else command


def render(speed: dict[str, Any], testbed: dict[str, Any], out: Path) -> str:
    """Markdown per testbed model: methods ranked at ``RANK_KEEP``, Pareto plot and table.

    Writes the plots ``pareto_{model}.png`` to ``out``.
    """
    machine = speed["machine"]
    keeps = speed.get("keeps", [RANK_KEEP])
    text = [
        f"Measured by `{made_by(speed.get('command', ''))}` on {machine_name(machine)} "
        f"({machine['cpu_count']} "
        f"cores, {machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"transformers {machine['transformers']}) in {speed['minutes']:.0f} minutes, after "
        f"`make bench-testbed` ({testbed['n_questions']} held-out questions, drop mode). "
        f"Accuracy in % with 95% bootstrap intervals, `*` = differs from random at p < 0.05 "
        f"(paired); *of ceiling* = accuracy over the better testbed oracle's at the same keep "
        f"(the oracles read the generated scene). Speed: `vissparse bench --model-config` at "
        f"keep {', '.join(f'{k:g}' for k in keeps)} on the config of the same family (depth "
        f"/ {speed['depth_scale']:g}, float32, median of {speed['repeats']} paired runs); the "
        f"in-LLM rows at the same average image tokens per layer. In the first table speed is "
        f"at keep {RANK_KEEP:g}: overhead = query, scoring, selection and dropping, timed on "
        f"their own; signal = the vision-attention signals a method reads, computed in a hook "
        f"inside the vision encoder (part of its time). Rows are ranked by accuracy at keep "
        f"{RANK_KEEP:g}; {', '.join(REFERENCES)} are the reference rows. The plot and the "
        f"second table put every measured keep of every method at its measured prefill "
        f"speedup: comparing at equal tokens hides what a method costs, comparing at equal "
        f"time is what a user decides by.",
    ]
    rows = with_ceiling([r for r in testbed["results"] if r["family"] == "all"])
    text[0] += _merged_text(speed) + _speed_gaps(speed, rows)
    fast = {(r["config"], r["scorer"], r.get("stage", "input"), r["keep_ratio"]): r
            for r in speed["runs"]}  # fmt: skip
    for model, config in CONFIG_FOR.items():
        mine = [r for r in rows if r["model"] == model and not r["scorer"].startswith("oracle")]
        if not mine:
            continue
        acc = {(r["scorer"], r["keep_ratio"]): r for r in mine}
        ranked = {s: acc[s, RANK_KEEP]["accuracy"] if (s, RANK_KEEP) in acc else -1.0
                  for s in dict.fromkeys(r["scorer"] for r in mine)}  # fmt: skip
        scorers = sorted(ranked, key=lambda s: -ranked[s])
        text += [
            f"\n**{model}** testbed checkpoint; speed on `{config}`:\n",
            "| method | " + " | ".join(f"acc keep {k:g}" for k in KEEPS)
            + f" | of ceiling @{RANK_KEEP:g} | overhead ms | signal ms | prefill speedup | "
            "of bound |",
            "|---|" + "---|" * (len(KEEPS) + 5),
        ]  # fmt: skip
        top = {k: r for (m, k, _), r in ceilings(rows).items() if m == model}
        if top:
            text.append("| ceiling (better oracle) | "
                        + " | ".join(f"{_pct(top[k]['accuracy'])} ({top[k]['scorer']})"
                                     if k in top else "" for k in KEEPS)
                        + " | 100% | | | | |")  # fmt: skip
        for scorer in scorers:
            stage = next(r.get("stage", "input") for r in mine if r["scorer"] == scorer)
            cells = [_acc_cell(acc.get((scorer, k))) for k in KEEPS]
            share = acc.get((scorer, RANK_KEEP), {}).get("of_ceiling")
            cells.append(f"{share:.0%}" if share is not None else "")
            f = fast.get((config, scorer, stage, RANK_KEEP))
            cells += ([f"{f['overhead_ms']:.1f}", f"{f['signal_ms'] or 0:.1f}",
                       f"{f['prefill_speedup']:.2f}x", f"{f['prefill_vs_bound']:.0%}"]
                      if f else ["", "", "", ""])  # fmt: skip
            name = scorer + (" (in LLM)" if stage == "llm" else "")
            name += " (reference)" if scorer in REFERENCES else ""
            text.append(f"| {name} | " + " | ".join(cells) + " |")
        measured = [r for r in speed["runs"] if r["config"] == config]
        points = join_points(mine, measured)
        if len(points) > 1:
            title = f"{model} testbed accuracy vs prefill speedup on {config}"
            plot = plot_pareto(points, out / f"pareto_{model}.png", title, SCORER_STYLE)
            text += [f"\nAccuracy against measured prefill speedup ({model} accuracy, "
                     f"`{config}` speed), every measured keep:\n",
                     f"![{model}: accuracy against prefill speedup]({RESULTS}/{plot.name})",
                     "", pareto_table(points)]  # fmt: skip
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=list(CONFIG_FOR.values()))
    parser.add_argument("--keep", type=float, action="append",
                        help="repeat for several (default 0.05 0.1 0.25 0.5)")  # fmt: skip
    parser.add_argument("--scorer", action="append",
                        help="repeat for several (default: every registered scorer)")  # fmt: skip
    parser.add_argument("--depth-scale", type=float, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=1)
    parser.add_argument("--testbed", type=Path,
                        default=Path("benchmarks/results/testbed/testbed_eval.json"))  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(RESULTS))
    parser.add_argument("--readme", type=Path, help="also put the tables into this README")
    parser.add_argument("--render-only", action="store_true",
                        help="rebuild the markdown from an earlier run's JSON")  # fmt: skip
    parser.add_argument("--merge", action="store_true",
                        help="keep the recorded rows of the scorers not measured now")  # fmt: skip
    args = parser.parse_args()
    args.keep = sorted(set(args.keep or KEEPS))
    if not args.testbed.exists():
        raise SystemExit(f"--testbed {args.testbed} not found: run `make bench-testbed` first")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "methods_speed.json"
    if args.render_only:
        speed = json.loads(path.read_text())
    else:
        speed = measure(args)
        if args.merge:
            if not path.exists():
                raise SystemExit(f"--merge: no recorded run at {path}")
            speed = merge_runs(json.loads(path.read_text()), speed)
        path.write_text(json.dumps(speed, indent=2) + "\n")
    text = render(speed, json.loads(args.testbed.read_text()), args.out)
    publish(text, args.out / "methods.md", args.readme, "methods-results")


if __name__ == "__main__":
    main()
