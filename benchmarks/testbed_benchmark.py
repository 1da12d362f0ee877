"""Testbed accuracy of every scorer on the shipped checkpoints, and the README's section.

Runs ``vissparse testbed eval`` on the shipped checkpoints (1000 held-out questions,
every registered scorer and the two oracles, keep 0.05 to 1.0, random over 3 seeds),
draws the kept patches of one test scene with cosine and random at keep 0.10, and
writes the markdown that
``make bench-testbed`` puts in the README between the ``testbed-results`` markers.

    python benchmarks/testbed_benchmark.py --out benchmarks/results/testbed --readme README.md
    python benchmarks/testbed_benchmark.py --out benchmarks/results/testbed --render-only
    python benchmarks/testbed_benchmark.py --out benchmarks/results/testbed --readme README.md \
        --scorer cosine     # only cosine's rows again (with random, checked unchanged)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_benchmark import publish

from vissparse.bench.report import machine_name
from vissparse.cli import main as cli
from vissparse.testbed.ceiling import ceiling_table
from vissparse.testbed.checkpoints import shipped_families
from vissparse.testbed.merge import merge_remeasured, remeasured_text
from vissparse.testbed.oracle import is_oracle
from vissparse.testbed.questions import FAMILIES
from vissparse.testbed.report import (
    accuracy_table,
    blank_table,
    family_table,
    plot_accuracy,
    write_results,
)

SHOW_SCENE = 3  # a relation question: the answer needs two objects
SHOW_KEEP = 0.1
CHECKPOINTS = "src/vissparse/testbed/checkpoints"
RESULTS = "benchmarks/results/testbed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/testbed"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--readme", type=Path, help="also put the section into this README")
    parser.add_argument("--render-only", action="store_true",
                        help="rebuild the markdown from an earlier run's JSON")  # fmt: skip
    parser.add_argument("--scorer", action="append",
                        help="re-measure only this scorer's rows (repeat for several) and "
                        "merge them into the recorded table")  # fmt: skip
    args = parser.parse_args()
    models = shipped_families()
    if args.scorer and not args.render_only:
        remeasure(args, models)
    elif not args.render_only:
        command = ["testbed", "eval", "--out", str(args.out), "--n", str(args.n)]
        for model in models:
            command += ["--model", model]
        if cli(command) != 0:
            raise SystemExit("testbed eval failed")
    if not args.render_only and (not args.scorer or "cosine" in args.scorer):
        for model in models:
            show = ["show", f"testbed:{SHOW_SCENE}", "--model", f"{CHECKPOINTS}/{model}",
                    "--keep-ratio", str(SHOW_KEEP), "--also-scorer", "random",
                    "--out", str(args.out / f"show_{model}.png")]  # fmt: skip
            if cli(show) != 0:
                raise SystemExit("vissparse show failed")
    else:  # the figure again, from the recorded rows (its style may have changed)
        rows = json.loads((args.out / "testbed_eval.json").read_text())["results"]
        plot_accuracy(rows, args.out / "testbed_accuracy.png")
    text = render(args.out)
    publish(text, args.out / "testbed.md", args.readme, "testbed-results")


def remeasure(args: argparse.Namespace, models: list[str]) -> None:
    """Evaluate ``args.scorer`` and random again; merge their rows into the recorded JSON."""
    scorers = [s for s in dict.fromkeys(args.scorer) if s != "random"]
    path = args.out / "testbed_eval.json"
    if not path.exists():
        raise SystemExit(f"--scorer needs the recorded table {path}: run without it first")
    old = json.loads(path.read_text())
    keeps = sorted({r["keep_ratio"] for r in old["results"] if r["scorer"] in scorers})
    if not keeps:
        raise SystemExit(f"--scorer {scorers}: the recorded table has no rows of these")
    with tempfile.TemporaryDirectory() as tmp:
        command = ["testbed", "eval", "--out", tmp, "--n", str(old["n_questions"]),
                   "--seed", str(old["question_seed"]),
                   "--random-seeds", str(old["random_seeds"]), "--scorer", "random"]  # fmt: skip
        for model in models:
            command += ["--model", model]
        for scorer in scorers:
            command += ["--scorer", scorer]
        for keep in keeps:
            command += ["--keep-ratio", f"{keep:g}"]
        if cli(command) != 0:
            raise SystemExit("testbed eval failed")
        new = json.loads((Path(tmp) / "testbed_eval.json").read_text())
    said = " ".join(f"--scorer {s}" for s in scorers)
    merged = merge_remeasured(old, new, scorers,
                              f"python benchmarks/testbed_benchmark.py {said}")  # fmt: skip
    blank = json.loads((args.out / "testbed_blank.json").read_text())["results"]
    meta = {k: v for k, v in merged.items() if k != "results"}
    write_results(merged["results"], blank, args.out, meta)


def render(out: Path) -> str:
    payload = json.loads((out / "testbed_eval.json").read_text())
    blank = json.loads((out / "testbed_blank.json").read_text())["results"]
    rows = payload["results"]
    machine = payload["machine"]
    lines = [
        f"Measured by `make bench-testbed` on {machine_name(machine)} ({machine['cpu_count']} "
        f"cores, {machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"transformers {machine['transformers']}) in {payload['seconds'] / 60:.0f} minutes: "
        f"{payload['n_questions']} held-out test questions (seed {payload['question_seed']}), "
        f"drop mode, greedy decoding, random over {payload['random_seeds']} seeds. "
        "Accuracy in % with 95% bootstrap intervals; `*` marks a difference from random at "
        "p < 0.05 (paired bootstrap on the same questions). At keep 1.0 every scorer keeps "
        "every token, so one unpruned run serves all rows. Rows marked *(in LLM)* prune "
        "inside the 4-layer language model (fastv and text-attn from layer 1, pdrop at "
        "layers 1, 2 and 3) at the same average image tokens per layer as the keep ratio "
        "of their column; at keep 0.25 and below no such setting exists (the first layer "
        "alone sees every token), so those cells are empty. The two oracle rows read the "
        "generated scene (testbed only): `oracle-objects` keeps the tokens that show objects "
        "first, `oracle-one-per-object` one token per object and the rest at random; the "
        "better one at each keep is the ceiling, and the second table gives every method's "
        f"accuracy as % of it.{remeasured_text(payload)}",
        "",
        f"![accuracy against keep_ratio]({RESULTS}/testbed_accuracy.png)",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        tokens = next(r["image_tokens_full"] for r in mine if r["family"] == "all")
        lines += ["", f"**{model}** ({tokens:.0f} image tokens per image), all question families:",
                  "", accuracy_table(mine), "",
                  *(["Accuracy as % of the ceiling (the better oracle at each keep):", "",
                     ceiling_table(mine), ""] if any(is_oracle(r["scorer"]) for r in mine)
                    else []),
                  f"By question family at keep {SHOW_KEEP:g}:", "",
                  family_table(mine, SHOW_KEEP, FAMILIES), "",
                  "Unpruned, blank-image ablation and chance, by family:", "",
                  blank_table([b for b in blank if b["model"] == model], mine)]  # fmt: skip
    lines += ["", f"Test scene {SHOW_SCENE}, keep {SHOW_KEEP:g}: cosine (left) and random "
              "(right) on the llava checkpoint "
              f"(`vissparse show testbed:{SHOW_SCENE} --model {CHECKPOINTS}/llava "
              f"--keep-ratio {SHOW_KEEP:g} --also-scorer random`):", "",
              f"![kept patches, cosine vs random]({RESULTS}/show_llava.png)"]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
