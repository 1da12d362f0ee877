"""Held-out accuracy of every recorded testbed training run, and the README's table.

Each folder under ``--runs`` holds one run's ``training.json`` and ``card_eval.json``
(what ``vissparse testbed train`` and ``vissparse testbed card`` write; the weights are
not kept), and a ``README.md`` where the run needs explaining. The shipped checkpoints
come first. The table shows how far runs with other options, seeds, step counts or
machines land from the shipped checkpoints.

    python benchmarks/testbed_runs.py --runs benchmarks/results/testbed/runs --readme README.md

A run is added with ``vissparse testbed train --family F --out DIR --seed S [--steps N]
[--accelerator gpu]`` and copying ``DIR/training.json`` and ``DIR/card_eval.json`` into
a folder of ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_benchmark import publish

from vissparse.testbed import checkpoint_dir
from vissparse.testbed.checkpoints import shipped_families
from vissparse.testbed.report import runs_table


def _load(folder: Path) -> tuple[dict, dict]:
    return (json.loads((folder / "training.json").read_text()),
            json.loads((folder / "card_eval.json").read_text()))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/results/testbed/runs"))
    parser.add_argument("--readme", type=Path, help="also put the table into this README")
    args = parser.parse_args()
    runs = [(f"shipped {f}", *_load(checkpoint_dir(f))) for f in shipped_families()]
    folders = sorted(p for p in args.runs.iterdir() if (p / "card_eval.json").is_file())
    runs += [(p.name, *_load(p)) for p in folders]
    command = "python benchmarks/testbed_runs.py " + " ".join(sys.argv[1:])
    text = (f"Produced by `{command.strip()}`; held-out accuracy % on the card's questions "
            f"(unpruned), 95% CI for all families together.\n\n{runs_table(runs)}")  # fmt: skip
    publish(text, args.runs.parent / "testbed_runs.md", args.readme, "testbed-runs")


if __name__ == "__main__":
    main()
