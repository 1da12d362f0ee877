"""The README's two figures, one for accuracy and one for speed, from recorded results.

Reads ``benchmarks/results/testbed/testbed_eval.json`` (``make bench-testbed``) and
``benchmarks/results/vllm/llava-1.5-7b_d8.json`` (``make bench-vllm``) and puts two
sentences between the ``readme-figures`` markers (``make bench-methods`` runs it):

    python benchmarks/readme_figures.py --readme README.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mock_benchmark import publish

from vissparse.bench.report import machine_name
from vissparse.config import PruningConfig
from vissparse.testbed.oracle import is_oracle

RESULTS = Path(__file__).parent / "results"
KEEP = 0.1
SPEED_CONFIG = "llava-1.5-7b"
DEFAULT = str(PruningConfig().scorer)  # the default method's row is quoted beside the best


def accuracy_figure(testbed: dict[str, Any], keep: float = KEEP) -> str:
    """The best method per testbed model at ``keep``, against the default, unpruned and random.

    The oracle rows (:mod:`vissparse.testbed.oracle`) are no method: they give the
    ceiling the best method is a share of.

    Example:
        >>> rows = [{"model": "m", "scorer": s, "keep_ratio": k, "family": "all",
        ...          "accuracy": a} for s, k, a in [("x", 0.1, 0.6), ("random", 0.1, 0.4),
        ...                                          ("x", 1.0, 0.9), ("y", 0.1, 0.5)]]
        >>> accuracy_figure({"results": rows, "n_questions": 10,
        ...                  "machine": {"processor": "x86_64", "cpu_count": 2}})[:60]
        'Accuracy at keep 0.1 on the testbed (10 held-out questions, '
    """
    rows = [r for r in testbed["results"] if r["family"] == "all"]
    parts = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        here = [r for r in mine if r["keep_ratio"] == keep]
        methods = [r for r in here if r["scorer"] != "random" and not is_oracle(r["scorer"])]
        best = max(methods, key=lambda r: r["accuracy"])
        oracles = [r["accuracy"] for r in here if is_oracle(r["scorer"])]
        unpruned = next(r for r in mine if r["keep_ratio"] == 1.0)
        named = {r["scorer"]: r["accuracy"] for r in here}
        ceiling = (f", {100 * best['accuracy'] / max(oracles):.0f}% of the oracle ceiling "
                   f"{100 * max(oracles):.1f}%" if oracles else "")  # fmt: skip
        parts.append(
            f"on the {model} checkpoint {best['scorer']} answers "
            f"{100 * best['accuracy']:.1f}% right{ceiling} (unpruned "
            f"{100 * unpruned['accuracy']:.1f}%"
            + "".join(
                f", {'the default ' * (name == DEFAULT)}{name} {100 * named[name]:.1f}%"
                for name in (DEFAULT, "random")
                if name in named and name != best["scorer"]
            )
            + ")"
        )
    machine = testbed["machine"]
    return (
        f"Accuracy at keep {keep:g} on the testbed ({testbed['n_questions']} held-out "
        f"questions, the best method per model): {'; '.join(parts)}. Measured by "
        f"`make bench-testbed` on {machine_name(machine)}, {machine['cpu_count']} cores."
    )


def speed_figure(vllm: dict[str, Any], keep: float = KEEP) -> str:
    """vLLM's requests/s at ``keep`` over the unpruned engine's, at the largest load.

    Example:
        >>> runs = [{"keep_ratio": k, "rows": [{"concurrency": 8, "requests_per_s": r}]}
        ...         for k, r in [(1.0, 0.2), (0.1, 0.5)]]
        >>> text = speed_figure({"config": "c", "depth_scale": 8, "scorer": "s", "vllm": "0",
        ...     "vllm_runs": runs, "machine": {"processor": "x86_64", "cpu_count": 2}})
        >>> text.split(" complete ")[1][:5]
        '2.50x'
    """
    runs = {run["keep_ratio"]: run["rows"] for run in vllm["vllm_runs"]}
    load = max(row["concurrency"] for row in runs[keep])

    def rate(k: float) -> float:
        return next(r["requests_per_s"] for r in runs[k] if r["concurrency"] == load)

    machine = vllm["machine"]
    return (
        f"Speed at keep {keep:g}: served by vLLM {vllm['vllm']} with the plugin "
        f"({vllm['scorer']}), {load} concurrent requests on {vllm['config']} shapes "
        f"(depth / {vllm['depth_scale']}, random weights) complete "
        f"{rate(keep) / rate(1.0):.2f}x the requests per second of unpruned vLLM. "
        f"Measured by `make bench-vllm` on {machine_name(machine)}, "
        f"{machine['cpu_count']} cores, vLLM's CPU build."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, help="put the figures into this README")
    args = parser.parse_args()
    testbed = json.loads((args.results / "testbed" / "testbed_eval.json").read_text())
    vllm = json.loads((args.results / "vllm" / f"{SPEED_CONFIG}_d8.json").read_text())
    text = f"- {accuracy_figure(testbed)}\n- {speed_figure(vllm)}"
    publish(text, args.results / "readme_figures.md", args.readme, "readme-figures")


if __name__ == "__main__":
    main()
