"""Command line: ``vissparse bench | sweep | tune | show``.

Examples::

    vissparse bench --mock --keep-ratio 0.1 --n-samples 100
    vissparse bench --model-config llava-1.5-7b --keep-ratio 0.1 --out results.json
    vissparse sweep --mock --keep-ratio 0.1 --keep-ratio 0.5 --out sweep/
    vissparse tune --mock --target-speedup 3
    vissparse show photo.jpg "What color is the car?" --prompt "Where is the dog?"
        --model ./llava-1.5-7b-hf --out kept.png
    vissparse testbed eval --model llava --model qwen2_vl --out results/testbed
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vissparse.api import VisSparse
from vissparse.bench.report import (
    LLM_COLUMNS,
    MODEL_COLUMNS,
    check_writable,
    format_table,
    machine_description,
    write_json,
    write_rows,
)
from vissparse.cli_support import (
    INTERRUPTED,
    Interrupted,
    check_device,
    integer,
    interrupted,
    keep_ratio,
    non_negative_int,
    one_line,
    positive_float,
    positive_int,
    refuse_ignored_flags,
    share,
)
from vissparse.strategies.registry import SCORERS, STRATEGIES

DEFAULT_SWEEP = [0.05, 0.1, 0.25, 0.5, 1.0]
# what main() prints as one line and exits 2 on: usage and input errors (PIL refuses an
# image over its pixel limit with an error of its own)
USAGE_ERRORS = (ValueError, TypeError, OSError, Image.DecompressionBombError)


def _add_model_args(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--mock", action="store_true", help="use the synthetic CPU model")
    p.add_argument("--model", help="HF model id or local directory, or tiny:FAMILY")
    if data:
        p.add_argument("--data", help="JSONL of {image, question, answer} (with --model)")
    p.add_argument("--scorer", default=None, choices=SCORERS.names(),
                   help="default: cosine (--mock: cosine-mean, see the mock docs)")  # fmt: skip
    p.add_argument("--max-new-tokens", type=positive_int, default=16)
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                   help="with --model DIR: the dtype to load in")  # fmt: skip
    p.add_argument("--device-map", help="with --model DIR: e.g. cuda or auto")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``vissparse`` command."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="vissparse", description=__doc__, formatter_class=raw)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="paired baseline-vs-pruned benchmark")
    bench.add_argument("--mock", action="store_true", help="use the synthetic CPU model")
    bench.add_argument("--model-config", help="shape-faithful config (see bench.model_configs)")
    bench.add_argument("--keep-ratio", type=keep_ratio, action="append", dest="keep_ratios",
                       help="repeat for one row each (default: mock 0.1, model-config "
                            "0.05 0.1 0.25 0.5 1.0)")  # fmt: skip
    bench.add_argument("--n-samples", type=positive_int, default=None,
                       help="mock only (default 100)")  # fmt: skip
    bench.add_argument("--scorer", action="append", choices=SCORERS.names(), dest="scorers",
                       help="repeat to compare methods (one model build for all)")  # fmt: skip
    bench.add_argument("--strategy", default="topk", choices=STRATEGIES.names())
    bench.add_argument(
        "--stage",
        default="input",
        choices=["input", "llm"],
        help="--model-config only: prune before the LM or inside it",
    )
    bench.add_argument("--layer", type=non_negative_int, action="append", dest="layers",
                       help="with --stage llm: the layer K (repeat for PyramidDrop-style "
                            "stages; default 2)")  # fmt: skip
    bench.add_argument("--seed", type=integer, default=0)
    bench.add_argument("--warmup", type=non_negative_int, default=None)
    bench.add_argument("--device", default=None, help="--model-config only (default cpu)")
    bench.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                       help="--model-config only (default float32)")  # fmt: skip
    bench.add_argument("--new-tokens", type=positive_int, default=8)
    bench.add_argument("--repeats", type=positive_int, default=3)
    bench.add_argument("--depth-scale", type=positive_float, default=8)
    bench.add_argument("--batch-size", type=positive_int, default=None,
                       help="--model-config only: prompts per call, each with its own "
                            "random image (default 1)")  # fmt: skip
    bench.add_argument("--compile", action="store_true",
                       help="--model-config only: both sides' language model compiled (static "
                            "KV cache, torch.compile, bucketed lengths; input stage)")  # fmt: skip
    bench.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    bench.add_argument("--out", help="write the results JSON here")
    bench.add_argument("--json", action="store_true", help="print results as JSON")
    bench.add_argument("--records", action="store_true", help="mock only, with --json: per call")

    sweep = sub.add_parser("sweep", help="accuracy and speedup against keep_ratio")
    _add_model_args(sweep)
    sweep.add_argument("--keep-ratio", type=keep_ratio, action="append", dest="keep_ratios")
    sweep.add_argument("--n-samples", type=positive_int, default=100)
    sweep.add_argument("--out", required=True, help="folder for sweep.csv/.json/.png")

    tune = sub.add_parser("tune", help="choose keep_ratio for a target")
    _add_model_args(tune)
    goal = tune.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-speedup", type=positive_float)
    goal.add_argument("--max-accuracy-drop", type=share)
    tune.add_argument("--n-samples", type=positive_int, default=100)
    tune.add_argument("--step", type=positive_float, default=0.01)
    tune.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="PNG of the kept patches")
    show.add_argument("image", help="image path, testbed:N (test scene N), or mock: a number")
    show.add_argument("prompts", nargs="*", metavar="PROMPT",
                      help="default with testbed:N: the scene's own question")  # fmt: skip
    show.add_argument("--prompt", action="append", default=[], dest="more_prompts",
                      help="another prompt, shown side by side")  # fmt: skip
    _add_model_args(show, data=False)
    show.add_argument("--keep-ratio", type=keep_ratio, default=0.25)
    show.add_argument("--also-scorer", action="append", default=[], choices=SCORERS.names(),
                      help="another scorer on the same prompts, in a panel beside")  # fmt: skip
    show.add_argument("--out", default="vissparse_show.png")

    from vissparse.testbed.cli import add_parser as add_testbed_parser

    add_testbed_parser(sub)
    return parser


def _vissparse(args: argparse.Namespace, keep_ratio: float = 0.1) -> VisSparse:
    if args.mock == bool(args.model):
        raise ValueError("give exactly one of --mock and --model")
    if args.mock:
        return VisSparse("mock", mock=True, keep_ratio=keep_ratio, scorer=args.scorer)
    if args.model.startswith("tiny:"):
        from vissparse.testing import tiny_model

        model, processor = tiny_model(args.model.removeprefix("tiny:"))
        return VisSparse(model, processor=processor, keep_ratio=keep_ratio, scorer=args.scorer)
    options: dict[str, Any] = {}
    if args.dtype:
        options["dtype"] = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
    if args.device_map:
        options["device_map"] = args.device_map
    return VisSparse(args.model, keep_ratio=keep_ratio, scorer=args.scorer, **options)


def _samples_and_kwargs(args: argparse.Namespace, vs: VisSparse) -> dict[str, Any]:
    """``--data``'s samples, each checked (an error names its file and line)."""
    if args.mock:
        return {}
    if not args.data:
        raise ValueError("--model needs --data (a JSONL of image/question/answer)")
    from vissparse.bench.checks import check_samples
    from vissparse.data import VQAJsonlDataset

    data = VQAJsonlDataset(args.data)
    n = min(len(data), args.n_samples) if hasattr(args, "n_samples") else len(data)
    samples = [{"image": it["image"], "prompt": it["question"], "answer": it["answer"]}
               for it in (data[i] for i in range(n))]  # fmt: skip
    check_samples(samples, vs.pipeline, lambda i: f"{data.path}:{data.rows[i][0]}")
    return {"samples": samples, "max_new_tokens": args.max_new_tokens}


def run_bench(args: argparse.Namespace) -> int:
    """The ``bench`` sub-command; ``--out`` holds the finished rows after every row."""
    if args.mock == bool(args.model_config):
        print("vissparse bench: give exactly one of --mock and --model-config", file=sys.stderr)
        return 2
    refuse_ignored_flags(args)
    out = check_writable(args.out) if args.out else None
    progress = not args.json or sys.stderr.isatty()
    if args.model_config:
        return _model_bench(args, out, progress)
    payload: dict[str, Any] = {"machine": machine_description(), "results": []}
    rows: list[dict[str, Any]] = payload["results"]
    try:
        for scorer in args.scorers or [None]:  # None: the mock's default scorer
            for ratio in args.keep_ratios or [0.1]:
                model = VisSparse(base_model="mock", keep_ratio=ratio, scorer=scorer,
                                  strategy=args.strategy, mock=True, seed=args.seed)  # fmt: skip
                result = model.benchmark(n_samples=args.n_samples or 100, seed=args.seed,
                                         warmup=3 if args.warmup is None else args.warmup,
                                         progress=progress)  # fmt: skip
                if not args.records:
                    result.pop("records")
                rows.append(result)
                if out:
                    write_json(out, {**payload, "partial": True})
    except KeyboardInterrupt:
        _show_bench(args, {**payload, "partial": True} if rows else None)
        raise interrupted(rows, out) from None
    _show_bench(args, payload)
    if out:
        write_json(out, payload)
    return 0


def _show_bench(args: argparse.Namespace, payload: dict[str, Any] | None) -> None:
    """Print a mock bench's rows: JSON with ``--json``, else a table and the machine."""
    if payload is None:
        return
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(payload["results"]))
        print(f"\nmachine: {payload['machine']}")


def _model_bench(args: argparse.Namespace, out: Path | None, progress: bool) -> int:
    """``bench --model-config``: every setting is checked before the model is built."""
    from vissparse.bench.model_bench import check_targets, run_model_bench

    done: dict[str, Any] = {"results": []}

    def save(report: dict[str, Any]) -> None:  # config, results, machine, targets: as recorded
        done.clear()
        done.update(report, machine=machine_description(), targets=check_targets(report))
        if out:
            write_json(out, {**done, "partial": True})

    try:
        run_model_bench(
            args.model_config, args.keep_ratios or DEFAULT_SWEEP,
            device=check_device(args.device or "cpu"), dtype=args.dtype or "float32",
            new_tokens=args.new_tokens, repeats=args.repeats,
            warmup=_warmup(args), depth_scale=args.depth_scale,
            attn_implementation=args.attn, seed=args.seed, progress=progress,
            scorer=args.scorers or ["cosine"], strategy=args.strategy, stage=args.stage,
            layer=tuple(args.layers) if args.layers else None, on_row=save,
            batch_size=args.batch_size or 1, compile=args.compile,
        )  # fmt: skip
    except KeyboardInterrupt:
        if done["results"]:
            _show_model_bench(args, {**done, "partial": True})
        raise interrupted(done["results"], out) from None
    _show_model_bench(args, done)
    if out:
        write_json(out, done)
    return 0


def _warmup(args: argparse.Namespace) -> int:
    """Warm-up pairs of a model bench: 1, or 2 with --compile.

    CUDA graphs warm up on a graph's first run and record on its second, so with two
    warm-up pairs the timed calls replay them.
    """
    if args.warmup is not None:
        return int(args.warmup)
    return 2 if args.compile else 1


def _show_model_bench(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(report, indent=2))
        return
    several = len(args.scorers or []) > 1
    columns = (("scorer", "scorer", "{}"),) * several + MODEL_COLUMNS
    if args.stage == "llm":
        columns += LLM_COLUMNS
    print(format_table(report["results"], columns))
    for check in report["targets"]:
        print(f"[{'met' if check['met'] else 'NOT met'}] {check['target']}")


def _saving(rows: list[dict[str, Any]], save: Callable[[], Any]) -> Callable[[Any], None]:
    """An ``on_row`` that keeps each finished row and saves them all."""

    def on_row(row: dict[str, Any]) -> None:
        rows.append(row)
        save()

    return on_row


def run_sweep(args: argparse.Namespace) -> int:
    """The ``sweep`` sub-command: CSV, JSON (after every row) and a PNG plot in ``--out``."""
    from vissparse.bench.plots import plot_sweep

    out = check_writable(args.out, folder=True)
    vs = _vissparse(args)
    name = "mock" if args.mock else args.model
    extra = {"model": name, "machine": machine_description()}
    rows: list[dict[str, Any]] = []
    on_row = _saving(rows, lambda: write_rows(rows, out, "sweep", {**extra, "partial": True}))
    try:
        vs.sweep(args.keep_ratios or DEFAULT_SWEEP, n_samples=args.n_samples, on_row=on_row,
                 **_samples_and_kwargs(args, vs))  # fmt: skip
    except KeyboardInterrupt:
        if rows:
            print(format_table(rows))
        raise interrupted(rows, out / "sweep.json") from None
    print(format_table(rows))  # before writing, so the table is never lost
    paths = write_rows(rows, out, "sweep", extra)
    png = plot_sweep(rows, out / "sweep.png", title=f"{name} ({vs.config.scorer})")
    print(f"\nwrote {paths['csv']}, {paths['json']}, {png}")
    return 0


def run_tune(args: argparse.Namespace) -> int:
    """The ``tune`` sub-command."""
    vs = _vissparse(args)
    rows: list[dict[str, Any]] = []
    try:
        result = vs.tune(target_speedup=args.target_speedup,
                         max_accuracy_drop=args.max_accuracy_drop, n_samples=args.n_samples,
                         step=args.step, progress=False, on_row=_saving(rows, lambda: None),
                         **_samples_and_kwargs(args, vs))  # fmt: skip
    except KeyboardInterrupt:
        if rows:
            print(format_table(sorted(rows, key=lambda r: r["keep_ratio"])))
        raise interrupted(rows) from None
    if args.json:
        print(json.dumps({"keep_ratio": result.keep_ratio, "met": result.met,
                          "target": result.target, "reason": result.reason,
                          "measurements": result.measurements}, indent=2))  # fmt: skip
    else:
        print(format_table(sorted(result.measurements, key=lambda r: r["keep_ratio"])))
        print(f"\n{result.reason}")
    return 0 if result.met else 1


def run_show(args: argparse.Namespace) -> int:
    """The ``show`` sub-command: a PNG of the kept patches, one panel per prompt."""
    from vissparse.bench.overlay import render_comparison

    check_writable(args.out)
    vs = _vissparse(args, keep_ratio=args.keep_ratio)
    image: Any = args.image
    prompts = [*args.prompts, *args.more_prompts]
    if args.mock:
        if not args.image.isdigit():
            raise ValueError(f"with --mock, IMAGE is a sample number, got {args.image!r}")
        image = vs.pipeline.sample(int(args.image))
    elif args.image.startswith("testbed:"):
        from vissparse.testbed import make_question

        number = args.image.removeprefix("testbed:")
        if not number.isdigit():
            raise ValueError(f"IMAGE testbed:N needs a scene number N, got {args.image!r}")
        scene = make_question(int(number), seed=0, split="test")
        image, prompts = scene["image"], prompts or [scene["question"]]
    if not prompts:
        raise ValueError("give at least one PROMPT (only testbed:N scenes have their own)")
    models = [vs]
    for name in args.also_scorer:  # the same loaded model with another scorer
        if args.mock:
            models.append(VisSparse("mock", mock=True, keep_ratio=args.keep_ratio, scorer=name))
        else:
            models.append(VisSparse(vs.model, processor=vs.pipeline.processor,
                                    keep_ratio=args.keep_ratio, scorer=name))  # fmt: skip
    path = render_comparison(models, image, prompts, args.out)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vissparse`` console script.

    A usage or input error prints one line and exits 2; Ctrl-C prints the finished rows
    (saved in ``--out`` as they finished) and one line, and exits 130.
    """
    args = build_parser().parse_args(argv)
    from vissparse.testbed.cli import run as run_testbed

    commands = {"bench": run_bench, "sweep": run_sweep, "tune": run_tune, "show": run_show,
                "testbed": run_testbed}  # fmt: skip
    name = " ".join(["vissparse", args.command, getattr(args, "testbed_command", "")]).strip()
    try:
        return commands[args.command](args)
    except USAGE_ERRORS as err:
        print(f"{name}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"{name}: {stop}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
