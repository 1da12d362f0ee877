"""``vissparse testbed train | eval | export``: the testbed's command line.

Examples::

    vissparse testbed train --family llava --out ckpt/llava --seed 0
    vissparse testbed eval --out results/testbed          # every shipped checkpoint
    vissparse testbed card --model ckpt/llava            # re-evaluate, rewrite its card
    vissparse testbed export --n 200 --split test --out data/testbed
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

KEEP_HELP = "repeat for several (default 0.05 0.1 0.25 0.5 1.0)"


def add_parser(sub: Any) -> None:
    """Add the ``testbed`` sub-command (with its own sub-commands) to ``sub``."""
    from vissparse.cli_support import (
        integer,
        keep_ratio,
        non_negative_float,
        non_negative_int,
        positive_float,
        positive_int,
        share,
    )
    from vissparse.strategies.registry import SCORERS
    from vissparse.testbed.models import TESTBED_FAMILIES, TESTBED_LACKS
    from vissparse.testbed.oracle import ORACLES
    from vissparse.testbed.train import PADDING_SIDES
    from vissparse.testbed.train import TRAIN_DEFAULTS as D
    from vissparse.testbed.train import TRAIN_SWITCHES as S

    testbed = sub.add_parser("testbed", help="generated questions and the trained miniature VLMs")
    tsub = testbed.add_subparsers(dest="testbed_command", required=True)

    train = tsub.add_parser("train", help="train a miniature VLM on generated questions")
    train.add_argument("--family", required=True, choices=TESTBED_FAMILIES)
    train.add_argument("--out", required=True, help="folder for the checkpoint")
    train.add_argument("--seed", type=integer, default=0)
    train.add_argument("--steps", type=positive_int, default=None, help="default: the family's")
    train.add_argument("--batch-size", type=positive_int, default=D["batch_size"])
    train.add_argument("--lr", type=positive_float, default=D["lr"], help="peak learning rate")
    train.add_argument("--workers", type=integer, default=1, choices=(0, 1),
                       help="data-generating processes (0 or 1)")  # fmt: skip
    train.add_argument("--accelerator", default=D["accelerator"], help="cpu or gpu")
    train.add_argument("--precision", default=D["precision"])
    train.add_argument("--warmup", type=positive_int, default=D["warmup"], help="warm-up steps")
    train.add_argument("--aux-weight", type=non_negative_float, default=D["aux_weight"],
                       help="weight of the image-token class loss (0: none)")  # fmt: skip
    train.add_argument("--clutter-ramp", type=share, default=D["clutter_ramp"],
                       help="share of items over which clutter grows (0: none)")  # fmt: skip
    train.add_argument("--objects-ramp", type=share, default=D["objects_ramp"],
                       help="share of items over which the most objects grows to 9")  # fmt: skip
    train.add_argument("--family-ramp", type=share, default=D["family_ramp"],
                       help="share of items over which question families come in")  # fmt: skip
    train.add_argument("--vision-steps", type=non_negative_int, default=None,
                       help="first steps on the vision side alone (default: family's)")  # fmt: skip
    train.add_argument("--extra-turns", type=non_negative_int, default=D["extra_turns"],
                       help="derived questions per scene after its own (0: one)")  # fmt: skip
    switches = {
        "aux_key": "key-cell target (one cell per object) in the aux loss",
        "aux_relation": "the colour left of / above each object, in the aux",
        "lm_relation": "the same, read from the LM's image tokens half-way",
        "lm_relation_late": "--lm-relation only once relation questions come in",
    }
    for key, text in switches.items():
        train.add_argument(
            f"--{key.replace('_', '-')}",
            action=argparse.BooleanOptionalAction,
            default=S[key],
            help=f"{text} (default: {'on' if S[key] else 'off'})",
        )
    train.add_argument("--family-weight", action="append", default=[], metavar="FAMILY=N",
                       help="FAMILY's balanced question N times per cycle")  # fmt: skip
    train.add_argument("--padding-side", choices=PADDING_SIDES, default=None,
                       help="where training batches pad (default: the family's)")  # fmt: skip
    train.add_argument("--arch", action="append", default=[], metavar="KEY=VALUE",
                       help="architecture change: vision.depth=3 (JSON value)")  # fmt: skip
    train.add_argument("--no-card", action="store_true", help="skip the held-out model card eval")

    ev = tsub.add_parser("eval", help="accuracy of every scorer at every keep ratio")
    ev.add_argument("--model", action="append",
                    help="checkpoint folder or shipped family (default: all shipped)")  # fmt: skip
    ev.add_argument("--out", required=True, help="folder for the CSV, JSON and PNG")
    ev.add_argument("--n", type=positive_int, default=1000, help="held-out questions")
    ev.add_argument("--seed", type=integer, default=0, help="seed of the test questions")
    ev.add_argument("--scorer", action="append", choices=[*SCORERS.names(), *ORACLES],
                    dest="scorers", help="repeat for several (default: every registered "
                    f"scorer but {', '.join(TESTBED_LACKS)}, and the testbed's "
                    "oracles)")  # fmt: skip
    ev.add_argument("--keep-ratio", type=keep_ratio, action="append", dest="keep_ratios",
                    help=KEEP_HELP)  # fmt: skip
    ev.add_argument("--random-seeds", type=positive_int, default=3)
    ev.add_argument("--batch-size", type=positive_int, default=50)

    card = tsub.add_parser("card", help="re-evaluate a trained checkpoint, rewrite its card")
    card.add_argument("--model", required=True, help="folder written by `testbed train`")
    card.add_argument("--n", type=positive_int, default=None,
                      help="held-out questions (default: as training writes it)")  # fmt: skip

    export = tsub.add_parser("export", help="write questions as PNG + JSONL")
    export.add_argument("--n", type=positive_int, required=True)
    export.add_argument("--split", default="test", choices=["train", "val", "test"])
    export.add_argument("--seed", type=integer, default=0)
    export.add_argument("--out", required=True)


def _model_path(name: str) -> Path:
    from vissparse.testbed.checkpoints import checkpoint_dir
    from vissparse.testbed.models import TESTBED_FAMILIES

    return checkpoint_dir(name) if name in TESTBED_FAMILIES else Path(name)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory if it lies below it, else as given.

    Recorded results then name no path of the machine they ran on.
    """
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run(args: argparse.Namespace) -> int:
    """Run the ``testbed`` sub-command ``args.testbed_command``."""
    command = args.testbed_command
    if command == "train":
        return _train(args)
    if command == "eval":
        return _eval(args)
    if command == "card":
        return _card(Path(args.model), args.n)
    from vissparse.bench.report import check_writable
    from vissparse.testbed.questions import export_questions, make_questions

    check_writable(args.out, folder=True)
    path = export_questions(make_questions(args.n, args.seed, args.split), args.out)
    print(f"wrote {args.n} questions to {path}")
    return 0


def _card(out: Path, n: int | None = None) -> int:
    """Evaluate the checkpoint in ``out`` and write ``card_eval.json`` and ``README.md``."""
    from vissparse.testbed.card import card_eval, write_card
    from vissparse.testbed.evaluate import load_testbed_model

    if not (out / "training.json").is_file():
        raise ValueError(f"`--model` {str(out)!r} has no training.json (from `testbed train`)")
    model, processor = load_testbed_model(out)
    evaluation = card_eval(model, processor) if n is None else card_eval(model, processor, n)
    (out / "card_eval.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    training = json.loads((out / "training.json").read_text())
    print(write_card(out, training, evaluation).read_text())
    return 0


def _arch_changes(family: str, specs: list[str]) -> dict[str, Any]:
    """``--arch KEY=VALUE`` options as :func:`~vissparse.testbed.models.architecture` takes."""
    from vissparse.testbed.models import architecture

    changes: dict[str, Any] = {}
    for spec in specs:
        key, _, text = spec.partition("=")
        try:
            changes[key] = json.loads(text)
        except json.JSONDecodeError:
            error = f"`--arch` expects KEY=VALUE with a JSON value, got {spec!r}"
            raise ValueError(error) from None
    architecture(family, changes)  # unknown keys fail here, before any folder is made
    return changes


def _train(args: argparse.Namespace) -> int:
    from vissparse.testbed.card import plot_loss
    from vissparse.testbed.stream import check_family_weights
    from vissparse.testbed.train import (
        DEFAULT_PADDING_SIDE,
        DEFAULT_STEPS,
        DEFAULT_VISION_STEPS,
        train,
    )

    weights: dict[str, int] = {}
    for spec in args.family_weight:
        family, _, n = spec.partition("=")
        if not n.isdigit():
            raise ValueError(f"`--family-weight` expects FAMILY=N, got {spec!r}")
        if family in weights:
            raise ValueError(f"`--family-weight` gives {family!r} twice")
        weights[family] = int(n)
    check_family_weights(weights)  # before the output folder is made
    changes = _arch_changes(args.family, args.arch)
    out = Path(args.out)  # made by train() once every setting is checked
    steps = args.steps or DEFAULT_STEPS[args.family]
    train(args.family, out, seed=args.seed, steps=steps, batch_size=args.batch_size, lr=args.lr,
          workers=args.workers,
          precision=args.precision, accelerator=args.accelerator, warmup=args.warmup,
          extra_turns=args.extra_turns, aux_weight=args.aux_weight,
          clutter_ramp=args.clutter_ramp, objects_ramp=args.objects_ramp,
          family_ramp=args.family_ramp, aux_key=args.aux_key, family_weights=weights,
          aux_relation=args.aux_relation, lm_relation=args.lm_relation,
          lm_relation_late=args.lm_relation_late and args.lm_relation,
          padding_side=args.padding_side or DEFAULT_PADDING_SIDE[args.family], changes=changes,
          vision_steps=DEFAULT_VISION_STEPS[args.family] if args.vision_steps is None
          else args.vision_steps)  # fmt: skip
    plot_loss(out / "logs", out / "loss.png")
    if not args.no_card:
        _card(out)
    print(f"wrote {out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    """``testbed eval``: everything checked first; the rows saved after every finished run."""
    from transformers import AutoConfig

    from vissparse.bench.report import check_writable, machine_description, write_rows
    from vissparse.cli_support import interrupted
    from vissparse.testbed.evaluate import (
        KEEP_RATIOS,
        Run,
        blank_check,
        load_testbed_model,
        run_scorers,
        summarize_run,
    )
    from vissparse.testbed.llm_rows import check_llm_keeps
    from vissparse.testbed.models import TESTBED_LACKS, testbed_scorers
    from vissparse.testbed.oracle import ORACLES
    from vissparse.testbed.questions import make_questions
    from vissparse.testbed.report import accuracy_table, write_results

    out = check_writable(args.out, folder=True)
    if not args.model:
        from vissparse.testbed.checkpoints import shipped_families

        args.model = list(shipped_families())
        if not args.model:
            raise ValueError("no testbed checkpoint ships with this version: pass `--model DIR`")
    paths = [_model_path(m) for m in args.model]
    scorers = list(dict.fromkeys(args.scorers or [*testbed_scorers(), *ORACLES]))
    for name in scorers:
        if name in TESTBED_LACKS:
            raise ValueError(
                f"`--scorer` {name!r} cannot run on the testbed: {TESTBED_LACKS[name]}"
            )
    keeps = sorted(set(args.keep_ratios or KEEP_RATIOS))
    for name, path in zip(args.model, paths, strict=True):
        if not (path / "config.json").is_file():
            raise ValueError(f"`--model` {str(path)!r} is not a checkpoint folder")
        check_llm_keeps(scorers, keeps, AutoConfig.from_pretrained(path), name, "--keep-ratio")
    questions = make_questions(args.n, seed=args.seed, split="test")
    rows: list[dict[str, Any]] = []
    blank: list[dict[str, Any]] = []
    start = time.perf_counter()
    models = {n: _shown(p) for n, p in zip(args.model, paths, strict=True)}
    meta = {"command": "vissparse testbed eval", "models": models,
            "n_questions": args.n, "question_seed": args.seed, "split": "test", "mode": "drop",
            "random_seeds": args.random_seeds}  # fmt: skip

    def extra() -> dict[str, Any]:
        return {**meta, "seconds": round(time.perf_counter() - start, 1),
                "machine": machine_description()}  # fmt: skip

    def order(row: dict[str, Any]) -> tuple[int, float, int]:  # as the runs are listed
        return args.model.index(row["model"]), row["keep_ratio"], scorers.index(row["scorer"])

    def saver(name: str) -> Any:
        """An ``on_run`` for model ``name``: its rows added in order, and saved."""
        random: dict[float, Run] = {}  # the random scorer's runs: the references

        def add(run: Run) -> None:
            if run.scorer == "random":
                random[run.keep_ratio] = run
            rows.extend(summarize_run(name, run, random.get(run.keep_ratio), questions))
            rows.sort(key=order)  # stable: each run's rows stay in family order
            write_rows(rows, out, "testbed_eval", {**extra(), "partial": True})

        return add

    name = args.model[0]
    try:
        for name, path in zip(args.model, paths, strict=True):
            model, processor = load_testbed_model(path)
            run_scorers(model, processor, questions, scorers, keeps, range(args.random_seeds),
                        args.batch_size, on_run=saver(name))  # fmt: skip
            blank += blank_check(name, model, processor, questions, args.batch_size)
            write_rows(blank, out, "testbed_blank", {**extra(), "partial": True})
            _print_table(name, path, rows, accuracy_table)
    except KeyboardInterrupt:
        if any(r["model"] == name for r in rows):
            _print_table(name, paths[args.model.index(name)], rows, accuracy_table)
        raise interrupted(rows, out / "testbed_eval.json") from None
    written = write_results(rows, blank, out, extra())
    print("\nwrote " + ", ".join(str(p) for p in written.values()))
    return 0


def _print_table(name: str, path: Path, rows: list[dict[str, Any]], table: Any) -> None:
    print(f"\n{name} ({path}): accuracy % [95% CI], * = differs from random (p < 0.05)")
    print(table([r for r in rows if r["model"] == name]))
