"""Run ``vissparse bench --model-config`` for each config and tabulate the results.

    python benchmarks/model_benchmark.py --device cpu --dtype float32 --depth-scale 8 \\
        --out benchmarks/results --readme README.md

Writes ``{config}_{device}_{dtype}_d{depth}.json`` per config (``..._b{B}.json`` for each
``--batch-size B`` above 1; repeat the flag for tables at several batch sizes; a
``_compiled`` suffix for ``--compile`` runs, ``--modes eager compiled`` does both) and
``model_{device}.md`` (the tables quoted in the README, between the
``model-results-{device}`` markers; each config's batch sizes in order). The
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
from vissparse.bench.report import machine_name, markdown_table, with_throughput
from vissparse.cli import main as cli
from vissparse.cli_support import positive_int

CONFIGS = tuple(MODEL_CONFIGS)  # every shape-faithful config, in the README's order
KEEP = ("0.05", "0.1", "0.25", "0.5", "1.0")
MODES = ("eager", "compiled")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--depth-scale", default="8")
    parser.add_argument("--new-tokens", default="8")
    parser.add_argument("--repeats", default="3")
    parser.add_argument("--batch-size", action="append", type=positive_int, dest="batch_sizes",
                        help="prompts per call; repeat for one table each (default 1)")  # fmt: skip
    parser.add_argument("--modes", nargs="+", choices=MODES, default=None,
                        help="eager and/or compiled (static KV cache + torch.compile) runs; "
                             "default eager")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="the same as --modes compiled")
    parser.add_argument("--keep", nargs="+", default=list(KEEP),
                        help=f"keep ratios measured (default {' '.join(KEEP)})")  # fmt: skip
    parser.add_argument(
        "--produced-by",
        help="the command the tables name as their source "
        "(default: this one; a script that ran several passes names itself)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rebuild every table from its JSON")  # fmt: skip
    args = parser.parse_args()
    if args.compile and args.modes:
        parser.error("give --compile or --modes, not both")
    modes = ["compiled"] if args.compile else list(dict.fromkeys(args.modes or ["eager"]))
    args.out.mkdir(parents=True, exist_ok=True)
    batch_sizes = args.batch_sizes or [1]
    sections = []
    for name in CONFIGS:
        stem = f"{name}_{args.device}_{args.dtype}_d{args.depth_scale}"
        if name in args.configs and not args.render_only:
            for batch in dict.fromkeys(batch_sizes):
                for mode in modes:
                    compiled = mode == "compiled"
                    _measure(name, batch, result_path(args.out, stem, batch, compiled), args,
                             compiled)  # fmt: skip
        for batch, compiled in recorded_runs(args.out, stem):
            path = result_path(args.out, stem, batch, compiled)
            sections.append(_section(name, json.loads(path.read_text())))
    argv = [a for a in _without_configs(sys.argv[1:]) if a != "--render-only"]
    command = args.produced_by or " ".join(["python benchmarks/model_benchmark.py", *argv])
    text = (
        f"Produced by `{command}` (each config's table from its JSON in `{args.out}`; "
        "`--configs NAME ...` re-measures only those).\n\n" + "\n".join(sections)
    )
    publish(text, args.out / f"model_{args.device}.md", args.readme,
            f"model-results-{args.device}")  # fmt: skip


def result_path(out: Path, stem: str, batch: int, compiled: bool = False) -> Path:
    """A (config, batch, mode) result's JSON: batch 1 eager keeps its name from before batches.

    Example:
        >>> [result_path(Path("r"), "x", b, c).name for b, c in ((1, False), (8, True))]
        ['x.json', 'x_b8_compiled.json']
    """
    batch_part = "" if batch == 1 else f"_b{batch}"
    return out / f"{stem}{batch_part}{'_compiled' if compiled else ''}.json"


def recorded_runs(out: Path, stem: str) -> list[tuple[int, bool]]:
    """The (batch size, compiled) runs with a result JSON in ``out``: by batch, eager first."""
    found = []
    for path in out.glob(f"{stem}*.json"):
        rest = path.stem.removeprefix(stem)
        compiled = rest.endswith("_compiled")
        rest = rest.removesuffix("_compiled")
        if rest == "":
            found.append((1, compiled))
        elif rest.startswith("_b") and rest[2:].isdigit():
            found.append((int(rest[2:]), compiled))
    return sorted(found)


def _measure(
    name: str, batch: int, path: Path, args: argparse.Namespace, compiled: bool = False
) -> None:
    """``vissparse bench --model-config name --batch-size batch [--compile] --out path``."""
    argv = ["bench", "--model-config", name, "--device", args.device, "--dtype", args.dtype,
            "--depth-scale", args.depth_scale, "--new-tokens", args.new_tokens,
            "--repeats", args.repeats, "--batch-size", str(batch), "--out", str(path)]  # fmt: skip
    for keep in args.keep:
        argv += ["--keep-ratio", keep]
    if compiled:
        argv.append("--compile")
    if cli(argv) != 0:
        mode = " --compile" if compiled else ""
        raise SystemExit(f"vissparse bench --model-config {name} --batch-size {batch}{mode} failed")


def _section(name: str, report: dict) -> str:
    """One (config, batch) table with what it was measured on."""
    report = with_throughput(report)
    cfg, machine = report["config"], report["machine"]
    batch = cfg["batch_size"]
    where = machine.get("gpu") or (
        f"{machine_name(machine)} CPU, {machine['cpu_count']} cores, "
        f"{machine['torch_threads']} torch threads"
    )
    targets = "".join(
        f"\n- {'met' if t['met'] else 'NOT met'}: {t['target']}" for t in report["targets"]
    )
    images = (f"{cfg['n_image_tokens']} image tokens of {cfg['sequence_length']}" if batch == 1
              else f"batch of {batch} prompts, each {cfg['n_image_tokens'] // batch} image "
                   f"tokens of {cfg['sequence_length']}")  # fmt: skip
    compiled = (", compiled (static KV cache + torch.compile, prompts padded to their bucket)"
                if cfg.get("compile") else "")  # fmt: skip
    return (
        f"**{name}**{f' at batch {batch}' if batch > 1 else ''}{compiled} "
        f"({cfg['reference']} shapes; "
        f"vision {cfg['vision_layers']}/{cfg['real_vision_layers']} and LM "
        f"{cfg['text_layers']}/{cfg['real_text_layers']} layers; "
        f"{cfg['image_size'][0]}x{cfg['image_size'][1]} image, {images}; {cfg['dtype']}, "
        f"{cfg['attn_implementation']}; {cfg['new_tokens']} new tokens; median of "
        f"{cfg['repeats']} paired runs) on {where}, torch {machine['torch']}, "
        f"transformers {machine.get('transformers', '?')}, "
        f"FLOP counter / analytic formula = {cfg['flop_counter_vs_analytic']:.3f}; "
        f"{_baseline_times(report['results'])}"
        f"{f' (each call answers all {batch} prompts)' if batch > 1 else ''}:\n\n"
        f"{markdown_table(report['results'])}\n{targets}\n"
    )


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
