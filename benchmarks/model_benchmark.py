"""Run ``vissparse bench --model-config`` for each config and tabulate the results.

    python benchmarks/model_benchmark.py --device cpu --dtype float32 --depth-scale 8 \\
        --out benchmarks/results --readme README.md

Writes ``{config}_{device}_{dtype}_d{depth}.json`` per config and ``model_{device}.md``
(the tables quoted in the README, between the ``model-results-{device}`` markers). The
configs in ``--configs`` are measured; the tables of the others are rebuilt from their
JSON of an earlier run where it exists (``--configs llava-onevision-7b`` adds one config
without re-measuring the rest). ``--render-only`` measures nothing and rebuilds every
table from its JSON (results brought back from a GPU machine, say).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_benchmark import publish

from vissparse.bench.model_configs import MODEL_CONFIGS
from vissparse.bench.report import machine_name, markdown_table
from vissparse.cli import main as cli

CONFIGS = tuple(MODEL_CONFIGS)  # every shape-faithful config, in the README's order
KEEP = ("0.05", "0.1", "0.25", "0.5", "1.0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--depth-scale", default="8")
    parser.add_argument("--new-tokens", default="8")
    parser.add_argument("--repeats", default="3")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rebuild every table from its JSON")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sections = []
    for name in CONFIGS:
        path = args.out / f"{name}_{args.device}_{args.dtype}_d{args.depth_scale}.json"
        if name in args.configs and not args.render_only:
            argv = ["bench", "--model-config", name, "--device", args.device, "--dtype",
                    args.dtype, "--depth-scale", args.depth_scale, "--new-tokens",
                    args.new_tokens, "--repeats", args.repeats, "--out", str(path)]  # fmt: skip
            for keep in KEEP:
                argv += ["--keep-ratio", keep]
            if cli(argv) != 0:
                raise SystemExit(f"vissparse bench --model-config {name} failed")
        elif not path.exists():
            continue
        report = json.loads(path.read_text())
        cfg, machine = report["config"], report["machine"]
        where = machine.get("gpu") or (
            f"{machine_name(machine)} CPU, {machine['cpu_count']} cores, "
            f"{machine['torch_threads']} torch threads"
        )
        targets = "".join(
            f"\n- {'met' if t['met'] else 'NOT met'}: {t['target']}" for t in report["targets"]
        )
        sections.append(
            f"**{name}** ({cfg['reference']} shapes; vision {cfg['vision_layers']}/"
            f"{cfg['real_vision_layers']} and LM {cfg['text_layers']}/{cfg['real_text_layers']} "
            f"layers; {cfg['image_size'][0]}x{cfg['image_size'][1]} image, "
            f"{cfg['n_image_tokens']} image tokens of {cfg['sequence_length']}; {cfg['dtype']}, "
            f"{cfg['attn_implementation']}; {cfg['new_tokens']} new tokens; median of "
            f"{cfg['repeats']} paired runs) on {where}, torch {machine['torch']}, "
            f"transformers {machine.get('transformers', '?')}, "
            f"FLOP counter / analytic formula = {cfg['flop_counter_vs_analytic']:.3f}; "
            f"{_baseline_times(report['results'])}:\n\n"
            f"{markdown_table(report['results'])}\n{targets}\n"
        )
    argv = [a for a in _without_configs(sys.argv[1:]) if a != "--render-only"]
    command = " ".join(["python benchmarks/model_benchmark.py", *argv])
    text = (
        f"Produced by `{command}` (each config's table from its JSON in `{args.out}`; "
        "`--configs NAME ...` re-measures only those).\n\n" + "\n".join(sections)
    )
    publish(text, args.out / f"model_{args.device}.md", args.readme,
            f"model-results-{args.device}")  # fmt: skip


def _baseline_times(rows: list[dict]) -> str:
    """The unpruned model's times in milliseconds, the median over every row's baseline."""

    def ms(key: str) -> float:
        return statistics.median(r["baseline"][key]["median"] for r in rows)

    return (
        f"unpruned: prefill {ms('prefill_ms'):.1f} ms (vision {ms('vision_ms'):.1f}, LM "
        f"{ms('lm_prefill_ms'):.1f}), decode {ms('decode_ms_per_token'):.1f} ms per token"
    )


def _without_configs(argv: list[str]) -> list[str]:
    """``argv`` less ``--configs`` and its values (the command that measures them all)."""
    out, skipping = [], False
    for arg in argv:
        if arg.startswith("--"):
            skipping = arg == "--configs"
        if not skipping:
            out.append(arg)
    return out


if __name__ == "__main__":
    main()
