"""Every registered method side by side: testbed accuracy, overhead and CPU prefill speedup.

For each registered scorer, runs ``vissparse bench --model-config`` at one keep ratio on
the shape-faithful ``llava-1.5-7b`` and ``qwen2-vl-7b`` configs (paired baseline vs pruned,
medians), then joins the result with the testbed accuracy that ``make bench-testbed``
wrote (``benchmarks/results/testbed/testbed_eval.json``) and writes one table per testbed
model, ranked by accuracy at that keep ratio, between the README's ``methods-results``
markers.

    python benchmarks/methods_benchmark.py --out benchmarks/results/methods --readme README.md
    python benchmarks/methods_benchmark.py --out benchmarks/results/methods --render-only
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

from vissparse.bench.model_bench import run_model_bench
from vissparse.bench.report import machine_description, machine_name
from vissparse.strategies import SCORERS, build_scorer
from vissparse.strategies.base import reads_llm_attention

# testbed model -> the shape-faithful config of the same family
CONFIG_FOR = {"llava": "llava-1.5-7b", "qwen2_vl": "qwen2-vl-7b"}
ACCURACY_KEEPS = (0.05, 0.1, 0.25)
REFERENCES = ("random", "pool")


def input_scorers() -> list[str]:
    """The registered methods that prune before the language model (the rest run inside
    it: `make bench-llm`)."""
    return [s for s in SCORERS.names() if not reads_llm_attention(build_scorer(s))]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Model-bench every scorer on every config at ``args.keep``."""
    runs = []
    start = time.perf_counter()
    for config in args.configs:
        report = run_model_bench(
            config, [args.keep], device="cpu", dtype="float32", new_tokens=args.new_tokens,
            repeats=args.repeats, depth_scale=args.depth_scale, scorer=input_scorers(),
        )  # fmt: skip
        for row in report["results"]:
            runs.append({
                "config": config, "scorer": row["scorer"], "keep_ratio": args.keep,
                "n_kept": row["n_kept"], "n_image_tokens": row["n_image_tokens"],
                "prefill_speedup": row["prefill_speedup"],
                "flop_speedup_bound": row["flop_speedup_bound"],
                "prefill_vs_bound": row["prefill_vs_bound"], "overhead_ms": row["overhead_ms"],
                "signal_ms": row["signal_ms"],
            })  # fmt: skip
    return {
        "command": " ".join(["python benchmarks/methods_benchmark.py", *sys.argv[1:]]),
        "machine": machine_description(), "depth_scale": args.depth_scale,
        "repeats": args.repeats, "new_tokens": args.new_tokens,
        "minutes": (time.perf_counter() - start) / 60, "runs": runs,
    }  # fmt: skip


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def render(speed: dict[str, Any], testbed: dict[str, Any], keep: float) -> str:
    """Markdown: one table per testbed model, methods ranked by accuracy at ``keep``."""
    machine = speed["machine"]
    out = [
        f"Measured by `make bench-methods` on {machine_name(machine)} ({machine['cpu_count']} "
        f"cores, {machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"transformers {machine['transformers']}) in {speed['minutes']:.0f} minutes, after "
        f"`make bench-testbed` ({testbed['n_questions']} held-out questions, drop mode). "
        f"Accuracy in % with 95% bootstrap intervals, `*` = differs from random at p < 0.05 "
        f"(paired). Speed: `vissparse bench --model-config` at keep {keep:g} on the config "
        f"of the same family (depth / {speed['depth_scale']:g}, float32, median of "
        f"{speed['repeats']} paired runs); overhead = query, scoring, selection and "
        f"dropping, timed on their own; signal = the vision-attention signals a method "
        f"reads, computed in a hook inside the vision encoder (part of its time). Rows are "
        f"ranked by accuracy at keep {keep:g}; random and pool are the reference rows.",
    ]
    acc = {(r["model"], r["scorer"], r["keep_ratio"]): r for r in testbed["results"]
           if r["family"] == "all"}  # fmt: skip
    fast = {(r["config"], r["scorer"]): r for r in speed["runs"]}
    for model, config in CONFIG_FOR.items():
        # the methods measured at `keep` (the in-LLM ones have rows at keep 0.5 only,
        # tabulated in their own README section)
        scorers = sorted({s for (m, s, k) in acc if m == model and k == keep},
                         key=lambda s: -acc[(model, s, keep)]["accuracy"])  # fmt: skip
        if not scorers:
            continue
        out += [
            f"\n**{model}** testbed checkpoint; speed on `{config}`:\n",
            "| method | "
            + " | ".join(f"acc keep {k:g}" for k in ACCURACY_KEEPS)
            + " | overhead ms | signal ms | prefill speedup | of bound |",
            "|---|" + "---|" * (len(ACCURACY_KEEPS) + 4),
        ]
        for scorer in scorers:
            cells = []
            for k in ACCURACY_KEEPS:
                r = acc.get((model, scorer, k))
                star = "*" if r and r.get("vs_random_p_value", 1.0) < 0.05 else ""
                cells.append(f"{_pct(r['accuracy'])}{star} [{_pct(r['ci_low'])}, "
                             f"{_pct(r['ci_high'])}]" if r else "")  # fmt: skip
            f = fast.get((config, scorer))
            cells += ([f"{f['overhead_ms']:.1f}", f"{f['signal_ms']:.1f}",
                       f"{f['prefill_speedup']:.2f}x", f"{f['prefill_vs_bound']:.0%}"]
                      if f else ["", "", "", ""])  # fmt: skip
            name = f"{scorer} (reference)" if scorer in REFERENCES else scorer
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=list(CONFIG_FOR.values()))
    parser.add_argument("--keep", type=float, default=0.1)
    parser.add_argument("--depth-scale", type=float, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=1)
    parser.add_argument("--testbed", type=Path,
                        default=Path("benchmarks/results/testbed/testbed_eval.json"))  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/methods"))
    parser.add_argument("--readme", type=Path, help="also put the tables into this README")
    parser.add_argument("--render-only", action="store_true",
                        help="rebuild the markdown from an earlier run's JSON")  # fmt: skip
    args = parser.parse_args()
    if not args.testbed.exists():
        raise SystemExit(f"--testbed {args.testbed} not found: run `make bench-testbed` first")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "methods_speed.json"
    if args.render_only:
        speed = json.loads(path.read_text())
    else:
        speed = measure(args)
        path.write_text(json.dumps(speed, indent=2) + "\n")
    text = render(speed, json.loads(args.testbed.read_text()), args.keep)
    publish(text, args.out / "methods.md", args.readme, "methods-results")


if __name__ == "__main__":
    main()
