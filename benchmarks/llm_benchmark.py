"""Pruning inside the language model against pruning before it, on CPU, at equal budgets.

Runs ``vissparse bench --model-config`` (paired baseline vs pruned, medians) on the
shape-faithful ``llava-1.5-7b`` and ``qwen2-vl-7b`` configs for: cosine before the
language model, FastV (``fastv`` from layer 2) and PyramidDrop (``pdrop`` at 8, 16 and
24 of 32 layers, scaled to the benchmarked depth). Each row has the measured prefill
speedup against its own FLOP bound, the image tokens a layer sees on average, and the
input-stage keep ratio with the same analytic prefill FLOPs. Writes the markdown table
between the README's ``llm-results`` markers.

    python benchmarks/llm_benchmark.py --out benchmarks/results/llm --readme README.md
    python benchmarks/llm_benchmark.py --out benchmarks/results/llm --render-only
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
from vissparse.bench.model_configs import MODEL_CONFIGS
from vissparse.bench.report import machine_description, machine_name
from vissparse.llm.schedule import PDROP_LAYERS

CONFIGS = ("llava-1.5-7b", "qwen2-vl-7b")
FASTV_LAYER = 2
PDROP_DEPTH = 32  # PyramidDrop's layers are for 32-layer LLaVA-1.5


def settings(config: str, depth_scale: float) -> list[dict[str, Any]]:
    """The methods benchmarked on ``config`` at ``depth_scale``."""
    _, text_layers = MODEL_CONFIGS[config].depths(depth_scale)
    pdrop = tuple(max(1, round(layer * text_layers / PDROP_DEPTH)) for layer in PDROP_LAYERS)
    return [
        {"method": "cosine", "scorer": "cosine", "stage": "input", "layer": None},
        {"method": f"fastv K={FASTV_LAYER}", "scorer": "fastv", "stage": "llm",
         "layer": FASTV_LAYER},
        {"method": f"pdrop K={','.join(map(str, pdrop))}", "scorer": "pdrop", "stage": "llm",
         "layer": pdrop},
    ]  # fmt: skip


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Model-bench every method on every config at every keep ratio."""
    runs = []
    start = time.perf_counter()
    for config in args.configs:
        for setting in settings(config, args.depth_scale):
            report = run_model_bench(
                config, args.keep, device="cpu", dtype="float32", new_tokens=args.new_tokens,
                repeats=args.repeats, depth_scale=args.depth_scale, scorer=setting["scorer"],
                stage=setting["stage"], layer=setting["layer"],
            )  # fmt: skip
            text_layers = report["config"]["text_layers"]
            for row in report["results"]:
                runs.append({
                    "config": config, "method": setting["method"], "text_layers": text_layers,
                    **{k: row[k] for k in (
                        "keep_ratio", "stage", "layers", "n_kept", "n_image_tokens",
                        "avg_image_tokens", "input_keep_at_equal_flops", "prefill_speedup",
                        "flop_speedup_bound", "analytic_flop_speedup_bound",
                        "prefill_vs_bound", "kv_cache_ratio", "overhead_ms")},
                })  # fmt: skip
    return {
        "command": " ".join(["python benchmarks/llm_benchmark.py", *sys.argv[1:]]),
        "machine": machine_description(), "depth_scale": args.depth_scale,
        "repeats": args.repeats, "new_tokens": args.new_tokens,
        "minutes": (time.perf_counter() - start) / 60, "runs": runs,
    }  # fmt: skip


def render(result: dict[str, Any]) -> str:
    """Markdown: one table per config, methods by keep ratio."""
    machine = result["machine"]
    out = [
        f"Measured by `make bench-llm` on {machine_name(machine)} ({machine['cpu_count']} "
        f"cores, {machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"transformers {machine['transformers']}) in {result['minutes']:.0f} minutes: "
        f"`vissparse bench --model-config` (float32, SDPA, median of {result['repeats']} "
        f"paired runs, the language model at depth / {result['depth_scale']:g}). *avg "
        f"tokens*: image tokens a language-model layer sees on average; *input keep @ equal "
        f"FLOPs*: the keep ratio that costs the same prefill FLOPs when pruning before the "
        f"language model; *bound*: prefill FLOPs unpruned / pruned (counted by "
        f"`FlopCounterMode`); *overhead*: the pruning's own time (for the in-LLM rows, the "
        f"hooks: text attention from q and k, scoring, selection, gathers, masks).",
    ]
    for config in dict.fromkeys(r["config"] for r in result["runs"]):
        rows = [r for r in result["runs"] if r["config"] == config]
        out += [
            f"\n**{config}** ({rows[0]['text_layers']} language-model layers, "
            f"{rows[0]['n_image_tokens']} image tokens):\n",
            "| method | keep | avg tokens / layer | input keep @ equal FLOPs | prefill speedup "
            "| bound | of bound | KV cache | overhead ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(rows, key=lambda r: (r["keep_ratio"], r["stage"] != "input")):
            out.append(
                f"| {r['method']} | {r['keep_ratio']:g} | {r['avg_image_tokens']:.1f} | "
                f"{r['input_keep_at_equal_flops']:.3f} | {r['prefill_speedup']:.2f}x | "
                f"{r['flop_speedup_bound']:.2f}x | {r['prefill_vs_bound']:.0%} | "
                f"{r['kv_cache_ratio']:.2f} | {r['overhead_ms']:.1f} |"
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--keep", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--depth-scale", type=float, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/llm"))
    parser.add_argument("--readme", type=Path, help="also put the tables into this README")
    parser.add_argument("--render-only", action="store_true",
                        help="rebuild the markdown from an earlier run's JSON")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "llm_speed.json"
    if args.render_only:
        result = json.loads(path.read_text())
    else:
        result = measure(args)
        path.write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    publish(text, args.out / "llm.md", args.readme, "llm-results")


if __name__ == "__main__":
    main()
