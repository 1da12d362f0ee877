"""Validation accuracy over training: the shipped runs against other recorded runs.

Each folder under ``--runs`` holds one run's ``metrics.csv`` (the CSV logger's file from
``vissparse testbed train``), a finished run's or one stopped by hand; the folder name
starts with ``cpu-FAMILY-`` or ``gpu-FAMILY-``. For each run the table gives its teacher-
forced ``val/accuracy`` at every check against the shipped checkpoint of its family, and
how many logged values equal the shipped run's at the same step (the same command on
another machine repeats it exactly). A run folder with a ``REFERENCE`` file is compared
with the run that file names (a rerun of a checkpoint shipped before the current one).
Runs that log accuracy per question family get a row per family too, to show when each
family is learned.

    python benchmarks/testbed_curves.py --runs benchmarks/results/testbed/curves --readme README.md
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_benchmark import publish

from vissparse.testbed import checkpoint_dir
from vissparse.testbed.report import curves_table, read_metrics
from vissparse.testbed.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/results/testbed/curves"))
    parser.add_argument("--readme", type=Path, help="also put the table into this README")
    args = parser.parse_args()
    folders = sorted(p for p in args.runs.iterdir() if (p / "metrics.csv").is_file())
    families = sorted({p.name.split("-")[1] for p in folders})
    runs = [(f"shipped {f}", f, read_metrics(checkpoint_dir(f) / "logs" / "metrics.csv"))
            for f in families]  # fmt: skip
    runs += [(p.name, p.name.split("-")[1], read_metrics(p / "metrics.csv")) for p in folders]
    references = {p.name: (p / "REFERENCE").read_text().strip() for p in folders
                  if (p / "REFERENCE").is_file()}  # fmt: skip
    command = "python benchmarks/testbed_curves.py " + " ".join(sys.argv[1:])
    n = inspect.signature(train).parameters["val_questions"].default
    text = (f"Produced by `{command.strip()}`: teacher-forced validation accuracy % on {n} "
            "validation questions at each check (step), from each run's `metrics.csv`; "
            "`equal to shipped`: how many of its logged losses and accuracies equal the "
            "shipped run's at the same step (or, where the cell names one, that run's: a "
            "checkpoint shipped before the current one)."
            f"\n\n{curves_table(runs, references)}")  # fmt: skip
    publish(text, args.runs.parent / "testbed_curves.md", args.readme, "testbed-curves")


if __name__ == "__main__":
    main()
