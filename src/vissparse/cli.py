"""Command line: ``vissparse bench --mock --keep-ratio 0.1 --n-samples 100``."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from typing import Any

import torch

from vissparse.api import VisSparse
from vissparse.keep_ratio import validate_keep_ratio
from vissparse.strategies.registry import SCORERS, STRATEGIES

TABLE_COLUMNS = (
    ("keep_ratio", "keep", "{:.2f}"),
    ("scorer", "scorer", "{}"),
    ("n_kept", "kept", "{:.0f}"),
    ("n_image_tokens", "of", "{:.0f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("baseline_accuracy", "base acc", "{:.1%}"),
    ("accuracy", "acc", "{:.1%}"),
    ("accuracy_delta", "acc delta", "{:+.1%}"),
    ("baseline_latency_ms", "base ms", "{:.2f}"),
    ("latency_ms", "pruned ms", "{:.2f}"),
)


def _keep_ratio(text: str) -> float:
    try:
        return validate_keep_ratio(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vissparse`` command."""
    parser = argparse.ArgumentParser(prog="vissparse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="paired baseline-vs-pruned benchmark")
    bench.add_argument("--mock", action="store_true", help="use the synthetic CPU model")
    bench.add_argument(
        "--keep-ratio", type=_keep_ratio, action="append", dest="keep_ratios",
        help="fraction of image tokens to keep; repeat for one row each (default 0.1)",
    )  # fmt: skip
    bench.add_argument("--n-samples", type=_positive_int, default=100)
    bench.add_argument("--scorer", action="append", choices=SCORERS.names(), dest="scorers",
                       help="scorer name; repeat to compare (default cosine)")  # fmt: skip
    bench.add_argument("--strategy", default="topk", choices=STRATEGIES.names())
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--warmup", type=int, default=3)
    bench.add_argument("--json", action="store_true", help="print results as JSON")
    bench.add_argument("--records", action="store_true", help="with --json: per-call records")
    return parser


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of benchmark rows.

    Example:
        >>> print(format_table([{"keep_ratio": 0.1, "speedup": 2.0}]).splitlines()[0].split())
        ['keep', 'speedup']
    """
    columns = [c for c in TABLE_COLUMNS if any(c[0] in r for r in rows)]
    cells = [[fmt.format(r[key]) if key in r else "" for key, _, fmt in columns] for r in rows]
    widths = [
        max(len(title), *(len(row[i]) for row in cells)) for i, (_, title, _) in enumerate(columns)
    ]
    lines = ["  ".join(t.rjust(w) for (_, t, _), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    """Where a benchmark ran: CPU, threads, GPU if any, library versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_bench(args: argparse.Namespace) -> int:
    """The ``bench`` sub-command."""
    if not args.mock:
        print("vissparse bench: only --mock is supported so far", file=sys.stderr)
        return 2
    rows = []
    for scorer in args.scorers or ["cosine"]:
        for keep_ratio in args.keep_ratios or [0.1]:
            model = VisSparse(
                base_model="mock", keep_ratio=keep_ratio, scorer=scorer,
                strategy=args.strategy, mock=True, seed=args.seed,
            )  # fmt: skip
            result = model.benchmark(
                n_samples=args.n_samples, seed=args.seed, warmup=args.warmup,
                progress=not args.json or sys.stderr.isatty(),
            )  # fmt: skip
            if not args.records:
                result.pop("records")
            rows.append(result)
    if args.json:
        print(json.dumps({"machine": machine_description(), "results": rows}, indent=2))
    else:
        print(format_table(rows))
        print(f"\nmachine: {machine_description()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vissparse`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        return run_bench(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
