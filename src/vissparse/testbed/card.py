"""The model card (``README.md``) written beside each trained testbed checkpoint.

Every figure in it is read from ``training.json`` and ``card_eval.json``, which the
training command writes; nothing is typed in by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vissparse.testbed.derived import RELATION_ERRORS, relation_error
from vissparse.testbed.evaluate import (
    answer_all,
    blank_check,
    chance_accuracy,
    correctness,
    pipeline_for,
)
from vissparse.testbed.questions import FAMILIES, make_questions
from vissparse.testbed.stats import bootstrap_ci
from vissparse.testbed.train import train_options, trained_on
from vissparse.testbed.training_module import AUX_OBJECT_WEIGHT, AUX_PLACE_WEIGHT

CLASSES = {
    "llava": "LlavaForConditionalGeneration (CLIP vision tower + Llama LM)",
    "qwen2_vl": "Qwen2VLForConditionalGeneration (ViT + 2x2 patch merger, M-RoPE LM)",
}
CARD_QUESTIONS = 1000
CARD_SEED = 0


def card_eval(
    model: Any, processor: Any, n: int = CARD_QUESTIONS, seed: int = CARD_SEED
) -> dict[str, Any]:
    """Unpruned and blank-image accuracy per family on ``n`` held-out test questions.

    ``counting_by_answer`` splits the counting questions by their true count: where a
    model's counting fails (few objects or many) says what to change in training.
    ``relation_errors`` counts the wrong relation answers by what they name (see
    :func:`~vissparse.testbed.derived.relation_error`).
    """
    questions = make_questions(n, seed=seed, split="test")
    texts, _, _ = answer_all(pipeline_for(model, processor, "cosine", 1.0), questions)
    scores = correctness(texts, questions)
    rows = []
    for family in ("all", *FAMILIES):
        sel = [family in ("all", q["family"]) for q in questions]
        picked = scores[sel]
        lo, hi = bootstrap_ci(picked)
        rows.append({"family": family, "n": int(sum(sel)), "accuracy": float(picked.mean()),
                     "ci_low": lo, "ci_high": hi})  # fmt: skip
    counts: dict[str, list[float]] = {}
    for q, right in zip(questions, scores, strict=True):
        if q["family"] == "counting":
            counts.setdefault(str(q["answer"]), []).append(float(right))
    by_count = [{"answer": a, "n": len(v), "accuracy": sum(v) / len(v)}
                for a, v in sorted(counts.items(), key=lambda kv: int(kv[0]))]  # fmt: skip
    wrong = [relation_error(q, t) for q, t in zip(questions, texts, strict=True)
             if q["family"] == "relation"]  # fmt: skip
    relation = {kind: wrong.count(kind) for kind in RELATION_ERRORS}
    blank = blank_check("", model, processor, questions)
    return {"n": n, "seed": seed, "split": "test", "unpruned": rows, "blank": blank,
            "counting_by_answer": by_count, "relation_errors": relation}  # fmt: skip


def _sinusoids(training: dict[str, Any]) -> str:
    """The card's words for the sinusoidal place features, where training used them."""
    freqs = training.get("aux_place_frequencies") or []
    if not freqs:
        return ""
    listed = ", ".join(map(str, freqs))
    return f", with sin and cos of pi * f * x and of pi * f * y for f in {listed}"


def _key(training: dict[str, Any]) -> str:
    """The card's words for the key-cell target, where training used it."""
    if not training.get("aux_key"):
        return ""
    return (", whether it is its object's key cell (one per object, so that counting key "
            f"cells counts objects; key cells weighted {AUX_OBJECT_WEIGHT:g}x)")  # fmt: skip


def _relation(training: dict[str, Any]) -> str:
    """The card's words for the relation target, where training used it."""
    if not training.get("aux_relation"):
        return ""
    return (", the colour of the object left of and above each object token (or none; "
            f"scored on object tokens, colours weighted {AUX_OBJECT_WEIGHT:g}x)")  # fmt: skip


def _lm_relation(training: dict[str, Any]) -> str:
    """The card's words for the language-model relation target, where training used it."""
    if not training.get("lm_relation"):
        return ""
    return ("\n- Relation target in the language model (same weight): a second linear head, "
            "not saved, predicts the colour of the object left of and above each object "
            "token (or none) from its hidden state after the first half of the language "
            "model's layers" + (f", from step {training.get('lm_relation_from', 0)}"
                                if training.get("lm_relation_late") else ""))  # fmt: skip


def train_command(training: dict[str, Any]) -> str:
    """The ``vissparse testbed train`` command line that ``training.json`` records.

    Example:
        >>> train_command({"family": "llava", "seed": 0, "steps": 1500, "lr": 0.0015,
        ...                "lm_relation": True, "lm_relation_late": True})
        'vissparse testbed train --family llava --out DIR --seed 0'
    """
    words = ["vissparse testbed train", f"--family {training['family']}", "--out DIR",
             f"--seed {training['seed']}", *train_options(training)]  # fmt: skip
    return " ".join(words)


def write_card(out: Path, training: dict[str, Any], evaluation: dict[str, Any]) -> Path:
    """Write ``out/README.md`` from the training settings and :func:`card_eval`'s result."""
    family = training["family"]
    arch = training["architecture"]
    seconds = training["train_seconds"]
    machine = training["machine"]
    cls = CLASSES[family]
    lines = [
        f"# VisSparse testbed model: `{family}`",
        "",
        f"A miniature `{cls}`, trained from scratch by VisSparse on generated visual questions "
        "(`vissparse.testbed`), so that pruning can be judged on a model that really answers. "
        "It is not a general-purpose model: it knows only the testbed's words and scenes.",
        "",
        "## Training",
        f"- Command: `{train_command(training)}`",
        f"- Data: {training['questions_seen']} training items, each from "
        f"`make_question(i, seed={training['seed']}, split='train')` (128x128 scenes, five "
        "question families, one-word answers; during the family curriculum each family "
        "draws its own indices i in order)",
        f"- Steps: {training['steps']} at batch size {training['batch_size']}, AdamW, peak lr "
        f"{training['lr']}, {training['warmup']} warm-up steps then cosine decay, precision "
        f"`{training['precision']}`",
        f"- Each item: a conversation of the balanced question plus up to "
        f"{training['extra_turns']} questions derived from the same scene; loss on the "
        "answer words and their end-of-turn tokens",
        f"- Curriculum: background clutter grows from plain to the held-out level over the "
        f"first {100 * training['clutter_ramp']:.0f}% of the training items; the most objects "
        f"per scene grows from 2 to 9 over the first "
        f"{100 * training.get('objects_ramp', 0):.0f}%; the question families come in three "
        "stages (attribute, then existence and counting, then relation and position) over "
        f"the first {100 * training.get('family_ramp', 0):.0f}% (of the language-model steps)",
        f"- Vision stage: the first {training.get('vision_steps', 0)} steps train the vision "
        "side alone on the auxiliary loss",
        f"- Auxiliary loss (weight {training['aux_weight']}): a linear head, not saved, "
        "predicts each image token's colour and shape class (or background; object classes "
        f"weighted {AUX_OBJECT_WEIGHT:g}x){_key(training)}{_relation(training)} and each "
        "object token's place (x, y in [-1, 1]"
        f"{_sinusoids(training)}, squared error, weight "
        f"{training.get('aux_place_weight', AUX_PLACE_WEIGHT):g}) from the tokens the "
        f"language model receives{_lm_relation(training)}",
        f"- Parameters: {training['n_parameters']:,}",
        f"- Architecture: `{json.dumps(arch)}`",
        f"- Trained on: {training['accelerator']} ({trained_on(training)}, "
        f"{machine.get('torch_threads')} torch threads, torch {machine.get('torch')}), "
        f"{seconds / 60:.1f} minutes",
        "- Loss curve: `logs/metrics.csv` (`train/loss` per 10 steps; teacher-forced "
        "`val/accuracy`, per question family where logged), `loss.png`",
        "",
        f"## Held-out accuracy (unpruned, {evaluation['n']} test questions, seed "
        f"{evaluation['seed']}; 95% bootstrap CI)",
        "",
        "| family | accuracy | blank image | blank image, forced choice | chance |",
        "|---|---|---|---|---|",
    ]
    blank = {r["family"]: r for r in evaluation["blank"]}
    for row in evaluation["unpruned"]:
        b = blank.get(row["family"]) or {}
        cells = [f"{100 * b[k]:.1f}" if k in b else "" for k in ("blank_accuracy", "blank_forced")]
        chance = f"{100 * chance_accuracy(row['family']):.1f}" if row["family"] != "all" else ""
        lines.append(
            f"| {row['family']} | {100 * row['accuracy']:.1f} [{100 * row['ci_low']:.1f}, "
            f"{100 * row['ci_high']:.1f}] | {' | '.join(cells)} | {chance} |"
        )
    lines += ["", "Blank image: the same questions with a plain grey image; it should stay near "
              "chance, which shows the answers come from the image. Forced choice: the "
              "model's likeliest answer among its question family's answer words (greedy "
              "answers on a grey image may be words that answer nothing).", ""]  # fmt: skip
    if evaluation.get("counting_by_answer"):
        listed = ", ".join(f"{r['answer']}: {100 * r['accuracy']:.0f} (n={r['n']})"
                           for r in evaluation["counting_by_answer"])  # fmt: skip
        lines += [f"Counting accuracy (%) by the true count: {listed}.", ""]
    errors = evaluation.get("relation_errors")
    if errors:
        listed = "; ".join(f"{kind}: {n}" for kind, n in errors.items())
        lines += [f"Wrong relation answers ({sum(errors.values())}), by the object whose "
                  f"colour they name (relative to the anchor): {listed}.", ""]  # fmt: skip
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


def plot_loss(log_dir: Path, path: Path) -> Path | None:
    """``loss.png`` from the CSV logger's ``metrics.csv`` (None if there is no log).

    The training loss, and beside it the validation accuracy over the steps, per
    question family where the log has it (``val/accuracy/FAMILY``).
    """
    import csv

    from vissparse.bench.plots import _pyplot, save_figure

    metrics = log_dir / "metrics.csv"
    if not metrics.is_file():
        return None
    with open(metrics) as f:
        every = list(csv.DictReader(f))
    rows = [r for r in every if r.get("train/loss")]
    if not rows:
        return None
    curves = {name.removeprefix("val/accuracy/"): [(int(r["step"]), 100 * float(r[name]))
                                                   for r in every if r.get(name)]
              for name in every[0] if name.startswith("val/accuracy/")}  # fmt: skip
    if not curves and any(r.get("val/accuracy") for r in every):
        curves = {"all": [(int(r["step"]), 100 * float(r["val/accuracy"]))
                          for r in every if r.get("val/accuracy")]}  # fmt: skip
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(10 if curves else 5.5, 3.4),
                             dpi=110, squeeze=False)  # fmt: skip
    ax = axes[0, 0]
    ax.plot([int(r["step"]) for r in rows], [float(r["train/loss"]) for r in rows], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (answer + end-of-turn tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if curves:
        ax = axes[0, 1]
        for name, points in curves.items():
            ax.plot(*zip(*points, strict=True), marker=".", lw=1, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("validation accuracy % (teacher-forced)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)
