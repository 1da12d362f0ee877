"""Accuracy of every scorer at every keep ratio on held-out testbed questions.

For each model, scorer and keep ratio, every question is answered in drop mode with
greedy decoding, and scored by exact match. Per scorer x keep x question family the
result holds the accuracy with a 95% bootstrap interval, the image tokens the language
model saw, and a paired bootstrap test against the random scorer on the same questions.
The random scorer runs with several seeds; its per-question score is the mean over
seeds. At keep 1.0 every scorer keeps every token, so one unpruned run serves them all.
Methods that prune inside the language model (fastv, pdrop, text-attn) run with
``stage="llm"`` at equal AVERAGE image tokens per layer: the row for keep ``r`` sees
``r`` of the image tokens per layer on average, like the input-stage rows (a keep the
unpruned first layers already exceed has no row; :mod:`vissparse.testbed.llm_rows`).
The oracles (:mod:`vissparse.testbed.oracle`) run as input-stage scorers.
A blank-image ablation (a plain grey image, same questions) shows the answers come
from the image; it is scored twice, on the greedy answer and as a forced choice among
the family's answer words (:func:`forced_choice`), since greedy answers on a grey image
are often words that answer nothing.

Example:
    >>> chance_accuracy("position"), round(chance_accuracy("attribute"), 3)
    (0.5, 0.182)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from vissparse.bench.paired import exact_match
from vissparse.testbed.llm_rows import llm_stage
from vissparse.testbed.oracle import is_oracle, oracle_scorer
from vissparse.testbed.questions import ANSWERS, FAMILIES
from vissparse.testbed.scenes import IMAGE_SIZE
from vissparse.testbed.stats import bootstrap_ci, paired_bootstrap

KEEP_RATIOS = (0.05, 0.1, 0.25, 0.5, 1.0)
RANDOM_SEEDS = (0, 1, 2)
MAX_NEW_TOKENS = 2  # one answer word, then end of turn
BLANK_GREY = (128, 128, 128)
# Templates whose answers form separate groups (attribute: colours vs shapes); the text
# says which group, so the best text-only guess is right once per group size.
ANSWER_GROUPS = {"attribute": 2}


def chance_accuracy(family: str) -> float:
    """Accuracy of the best guess from the question text alone, for balanced answers."""
    return ANSWER_GROUPS.get(family, 1) / len(ANSWERS[family])


@dataclass
class Run:
    """One scorer at one keep ratio on one model: per-question scores and token counts."""

    scorer: str
    keep_ratio: float
    scores: np.ndarray  # [n] in [0, 1]: mean over seeds of exact-match correctness
    n_kept: np.ndarray  # [n] image tokens seen (mean over seeds)
    n_image: np.ndarray  # [n] image tokens before pruning
    seed_accuracy: list[float] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # stage="llm": layers, final keep


def answer_all(
    pipe: Any, questions: Sequence[dict[str, Any]], batch_size: int = 50, desc: str = ""
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Answer every question with ``pipe`` in batches: texts, kept and total image tokens."""
    from tqdm.auto import tqdm

    texts: list[str] = []
    kept: list[float] = []
    total: list[int] = []
    starts = range(0, len(questions), batch_size)
    with tqdm(starts, desc=desc, leave=False, disable=not desc) as bar:  # closed on Ctrl-C
        for start in bar:
            chunk = questions[start : start + batch_size]
            details = pipe.generate([q["image"] for q in chunk], [q["question"] for q in chunk],
                                    return_details=True, max_new_tokens=MAX_NEW_TOKENS)  # fmt: skip
            texts += details.text
            per_layer = details.metrics.get("image_tokens_per_layer")
            if per_layer is not None:  # inside the LM: the average over layers is the count
                kept += [sum(row) / len(row) for row in per_layer]
            else:
                kept += [int(sum(int(m.sum()) for m in row)) for row in details.keep_mask]
            total += details.metrics.get("downsampled_from") or [  # downsample: full-size
                int(sum(m.numel() for m in row)) for row in details.keep_mask
            ]
    return texts, np.array(kept, dtype=np.float64), np.array(total, dtype=np.float64)


def correctness(texts: Sequence[str], questions: Sequence[dict[str, Any]]) -> np.ndarray:
    """1.0 where the answer matches the reference (normalised exact match), else 0.0."""
    return np.array([exact_match(t, q["answer"]) for t, q in zip(texts, questions, strict=True)],
                    dtype=np.float64)  # fmt: skip


def pipeline_for(model: Any, processor: Any, scorer: Any, keep_ratio: float, **stage: Any) -> Any:
    """A drop-mode top-k :class:`~vissparse.hf.pipeline.HFPipeline` with ``scorer``."""
    from vissparse.config import PruningConfig
    from vissparse.hf.pipeline import HFPipeline

    config = PruningConfig(keep_ratio=keep_ratio, scorer=scorer, **stage)
    return HFPipeline(model, processor, config)


def run_scorers(
    model: Any,
    processor: Any,
    questions: Sequence[dict[str, Any]],
    scorers: Sequence[str],
    keep_ratios: Sequence[float] = KEEP_RATIOS,
    random_seeds: Sequence[int] = RANDOM_SEEDS,
    batch_size: int = 50,
    progress: bool = True,
    on_run: Callable[[Run], None] | None = None,
) -> list[Run]:
    """Every scorer at every keep ratio (random over ``random_seeds``), in drop mode.

    ``on_run`` is called with each run as it finishes (to save it: an interrupted
    evaluation keeps what it saved). At each keep ratio the random scorer runs first, so
    every other run finds its reference finished (:func:`summarize_run`); the runs are
    returned in the order of ``keep_ratios`` and ``scorers``.
    """
    from vissparse.hf.downsample import takes_any_size
    from vissparse.strategies.baselines import RandomScorer

    runs: list[Run] = []
    full: Run | None = None
    oracles = {s: oracle_scorer(s, questions, processor) for s in scorers if is_oracle(s)}
    for keep in keep_ratios:
        if keep == 1.0:
            pipe = pipeline_for(model, processor, "cosine", 1.0)
            texts, kept, total = answer_all(pipe, questions, batch_size, "keep 1.0" * progress)
            full = Run("", 1.0, correctness(texts, questions), kept, total)
            for s in scorers:
                runs.append(Run(s, 1.0, full.scores, kept, total, [float(full.scores.mean())]))
                if on_run is not None:
                    on_run(runs[-1])
            continue
        done: dict[str, Run] = {}
        for name in sorted(scorers, key=lambda s: s != "random"):  # random first
            seeds: Sequence[int | None] = random_seeds if name == "random" else [None]
            stage = llm_stage(name, model, keep)
            if stage is None or (name == "downsample" and not takes_any_size(model)):
                continue  # (downsample: a fixed-size family; "pool" is its analogue)
            per_seed, kept_seed = [], []
            for seed in seeds:
                scorer: Any = oracles.get(name, name) if seed is None else RandomScorer(seed=seed)
                desc = f"{name}{'' if seed is None else f' seed {seed}'} keep {keep:g}"
                pipe = pipeline_for(model, processor, scorer, **{"keep_ratio": keep, **stage})
                texts, kept, total = answer_all(pipe, questions, batch_size, desc * progress)
                per_seed.append(correctness(texts, questions))
                kept_seed.append(kept)
            done[name] = Run(name, keep, np.mean(per_seed, axis=0), np.mean(kept_seed, axis=0),
                             total, [float(s.mean()) for s in per_seed],
                             {k: v for k, v in stage.items() if k != "stage"})  # fmt: skip
            if on_run is not None:
                on_run(done[name])
        runs += [done[name] for name in scorers if name in done]
    return runs


def answer_token_ids(tokenizer: Any) -> dict[str, list[int]]:
    """Per question family, the token id of each of its answers (one token per answer)."""
    ids: dict[str, list[int]] = {}
    for family, answers in ANSWERS.items():
        ids[family] = []
        for word in answers:
            tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(tokens) != 1:
                raise ValueError(f"answer {word!r} must be one token of `tokenizer`, "
                                 f"got {len(tokens)} tokens")  # fmt: skip
            ids[family].append(int(tokens[0]))
    return ids


def forced_choice(
    model: Any, processor: Any, questions: Sequence[dict[str, Any]], batch_size: int = 50
) -> np.ndarray:
    """Per-question correctness when the model must pick one of its family's answers.

    The unpruned model reads the prompt once; of the question family's answer words
    (``ANSWERS``) the one with the highest next-token logit is its answer. This shows the
    model's preference among valid answers, which free generation hides whenever the
    first generated word answers nothing (as on a blank image). Where greedy generation
    is right, so is the forced choice.
    """
    import torch

    pipe = pipeline_for(model, processor, "cosine", 1.0)
    ids = answer_token_ids(processor.tokenizer)
    scores: list[float] = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        inputs = pipe.prepare_inputs([q["image"] for q in chunk], [q["question"] for q in chunk])
        pipe.adapter.reset_state()
        with torch.inference_mode():
            logits = model(**inputs).logits[:, -1].float()  # left-padded: the last is real
        pipe.adapter.reset_state()
        for row, q in zip(logits, chunk, strict=True):
            pick = int(row[ids[q["family"]]].argmax())
            scores.append(float(ANSWERS[q["family"]][pick] == q["answer"]))
    return np.array(scores, dtype=np.float64)


def blank_ablation(
    model: Any,
    processor: Any,
    questions: Sequence[dict[str, Any]],
    batch_size: int = 50,
    forced: bool = False,
) -> np.ndarray:
    """Per-question correctness of the unpruned model when every image is plain grey.

    ``forced=True`` scores the :func:`forced_choice` among the family's answers instead
    of the greedy answer.
    """
    grey = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BLANK_GREY)
    blank = [{**q, "image": grey} for q in questions]
    if forced:
        return forced_choice(model, processor, blank, batch_size)
    texts, _, _ = answer_all(pipeline_for(model, processor, "cosine", 1.0), blank, batch_size)
    return correctness(texts, questions)


def summarize(
    model_name: str, runs: Sequence[Run], questions: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rows per scorer x keep x family (and ``"all"``): accuracy, CI, tokens, vs random."""
    random = {r.keep_ratio: r for r in runs if r.scorer == "random"}
    by_run = (summarize_run(model_name, run, random.get(run.keep_ratio), questions) for run in runs)
    return [row for rows in by_run for row in rows]


def summarize_run(
    model_name: str, run: Run, random: Run | None, questions: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """:func:`summarize`'s rows of one run, against ``random`` (same keep) where given."""
    families = np.array([q["family"] for q in questions])
    rows = []
    for family in ("all", *FAMILIES):
        sel = np.ones(len(families), bool) if family == "all" else families == family
        if not sel.any():
            continue
        lo, hi = bootstrap_ci(run.scores[sel])
        row: dict[str, Any] = {
            "model": model_name, "scorer": run.scorer, "keep_ratio": run.keep_ratio,
            "family": family, "n": int(sel.sum()), "accuracy": float(run.scores[sel].mean()),
            "ci_low": lo, "ci_high": hi, "image_tokens": float(run.n_kept[sel].mean()),
            "image_tokens_full": float(run.n_image[sel].mean()),
            "chance": float(np.mean([chance_accuracy(f) for f in families[sel]])),
        }  # fmt: skip
        if family == "all" and run.seed_accuracy:
            row["seed_accuracy"] = run.seed_accuracy
        if run.settings:  # inside the LM: its stages and final keep ratio
            row["stage"] = "llm"
            row["schedule"] = [list(pair) for pair in run.settings["schedule"]]
            row["final_keep_ratio"] = run.settings["keep_ratio"]
        if random is not None and run.scorer != "random" and run.keep_ratio < 1.0:
            test = paired_bootstrap(run.scores[sel], random.scores[sel])
            row.update({f"vs_random_{k}": v for k, v in test.items()})
        rows.append(row)
    return rows


def blank_rows(
    model_name: str,
    scores: np.ndarray,
    questions: Sequence[dict[str, Any]],
    forced: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Blank-image accuracy per family with its CI, beside the chance level.

    ``forced`` (per-question forced-choice correctness on the blank image) adds
    ``blank_forced`` with its CI, ``forced_ci_low`` and ``forced_ci_high``.
    """
    families = np.array([q["family"] for q in questions])
    rows = []
    for family in FAMILIES:
        sel = families == family
        if sel.any():
            lo, hi = bootstrap_ci(scores[sel])
            row = {"model": model_name, "family": family, "n": int(sel.sum()),
                   "blank_accuracy": float(scores[sel].mean()), "ci_low": lo, "ci_high": hi,
                   "chance": chance_accuracy(family)}  # fmt: skip
            if forced is not None:
                f_lo, f_hi = bootstrap_ci(forced[sel])
                row.update(blank_forced=float(forced[sel].mean()), forced_ci_low=f_lo,
                           forced_ci_high=f_hi)  # fmt: skip
            rows.append(row)
    return rows


def blank_check(
    model_name: str,
    model: Any,
    processor: Any,
    questions: Sequence[dict[str, Any]],
    batch_size: int = 50,
) -> list[dict[str, Any]]:
    """:func:`blank_rows` of both blank-image ablations: greedy answers and forced choice."""
    greedy = blank_ablation(model, processor, questions, batch_size)
    forced = blank_ablation(model, processor, questions, batch_size, forced=True)
    return blank_rows(model_name, greedy, questions, forced)


def load_testbed_model(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """``(model, processor)`` of a saved testbed checkpoint, loaded as any HF checkpoint."""
    from vissparse.api import VisSparse

    vs = VisSparse(base_model=str(path), keep_ratio=1.0)
    return vs.pipeline.model, vs.pipeline.processor
