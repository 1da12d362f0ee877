"""Training the testbed VLMs with Lightning on an endless stream of generated questions.

Each training item is a multi-turn conversation about one scene, as in LLaVA's
instruction tuning: the balanced question of :func:`make_question` first, then up to
``extra_turns`` questions derived from the same scene. The loss is next-token
cross-entropy on each answer word and its end-of-turn token only (prompt and image
tokens are not predicted), plus a dense auxiliary loss on the image tokens (see
:mod:`vissparse.testbed.training_module`); the background clutter, the objects per scene
and the question families follow curricula (:mod:`vissparse.testbed.stream`).
Everything is seeded: the weights (``build_model(family, seed)``), the question stream
(``make_question(i, seed, "train")`` for ``i = 0, 1, ...``) and dropout-free training,
so a run is reproducible from its seed on the same machine.

Example:
    >>> from vissparse.testbed.models import build_model
    >>> from vissparse.testbed import make_questions
    >>> _, processor = build_model("llava")
    >>> batch = encode_training_batch(processor, make_questions(2))
    >>> int((batch["labels"] != -100).sum())
    4
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vissparse.testbed.derived import relation_labels
from vissparse.testbed.portable import make_portable
from vissparse.testbed.questions import FAMILIES, make_questions
from vissparse.testbed.scenes import token_labels
from vissparse.testbed.stream import QuestionStream, check_family_weights
from vissparse.testbed.training_module import (
    AUX_PLACE_FREQUENCIES,
    AUX_PLACE_WEIGHT,
    testbed_training,
)

IGNORE = -100
DEFAULT_STEPS = {"llava": 1500, "qwen2_vl": 1500}  # the shipped checkpoints' settings
DEFAULT_VISION_STEPS = {"llava": 400, "qwen2_vl": 200}  # of those, on the vision side alone
# Where training batches pad. Right-padded rows need no attention mask (under causal
# attention every real token comes before the pads), so SDPA takes its faster causal
# path. The loss is the same function of the weights either way (rotary attention sees
# only relative positions), not the same bits: LLaVA's shipped run trained left-padded
# and fits the time budget, so it stays left and its command repeats it exactly. A
# ``training.json`` without ``padding_side`` trained left-padded.
DEFAULT_PADDING_SIDE = {"llava": "left", "qwen2_vl": "right"}
PADDING_SIDES = ("left", "right")
# The other defaults of ``vissparse testbed train`` (its flags read them, and
# ``train_options`` leaves out what equals them): with all of them the command repeats
# the shipped checkpoints
TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 1.5e-3, "batch_size": 32, "warmup": 100, "aux_weight": 0.5, "extra_turns": 20,
    "clutter_ramp": 0.3, "objects_ramp": 0.3, "family_ramp": 0.45,
    "precision": "bf16-mixed", "accelerator": "cpu",
}  # fmt: skip
# Its on / off switches (``--aux-key`` / ``--no-aux-key``, ...) and their defaults; a
# ``training.json`` without one of them predates it, and trained with it off
TRAIN_SWITCHES: dict[str, bool] = {
    "aux_key": False, "aux_relation": False, "lm_relation": True, "lm_relation_late": True,
}  # fmt: skip


def training_text(processor: Any, question: str, answer: str | None = None) -> str:
    """The chat-templated single-turn prompt, plus ``answer`` and end-of-turn when given."""
    turns = [(question, answer)] if answer is not None else []
    return conversation_text(processor, turns) if turns else _prompt(processor, question)


def _prompt(processor: Any, question: str) -> str:
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def conversation_text(processor: Any, turns: list[tuple[str, str]]) -> str:
    """A multi-turn chat about one image: the image comes with the first question."""
    messages: list[dict[str, Any]] = []
    for i, (question, answer) in enumerate(turns):
        content: list[dict[str, str]] = [{"type": "text", "text": question}]
        if i == 0:
            content.insert(0, {"type": "image"})
        reply = [{"type": "text", "text": answer}]
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": reply}]
    return processor.apply_chat_template(messages, tokenize=False)


def answer_marker(processor: Any) -> list[int]:
    """The last two token ids of the generation prompt: an answer follows them."""
    ids = processor.tokenizer(_prompt(processor, "?"), add_special_tokens=False)["input_ids"]
    return list(ids[-2:])


def check_padding_side(padding_side: str) -> None:
    """Raise unless ``padding_side`` is one of :data:`PADDING_SIDES`."""
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"`padding_side` must be one of {PADDING_SIDES}, got {padding_side!r}")


def encode_training_batch(
    processor: Any, items: list[dict[str, Any]], padding_side: str = "left"
) -> Any:
    """Processor outputs plus ``labels`` on every answer word and its end-of-turn token.

    An item is a question dict; with ``"turns"`` (a list of ``(question, answer)``) it
    is a multi-turn conversation about its image. Everything else is ``-100``.
    With ``padding_side="right"`` the batch has no ``attention_mask``: causal attention
    keeps every real token off the pads that follow it (see ``DEFAULT_PADDING_SIDE``).
    """
    check_padding_side(padding_side)
    turns = [it.get("turns") or [(it["question"], it["answer"])] for it in items]
    texts = [conversation_text(processor, t) for t in turns]
    batch = processor(images=[it["image"] for it in items], text=texts, padding=True,
                      padding_side=padding_side, return_tensors="pt")  # fmt: skip
    if padding_side == "right":
        del batch["attention_mask"]
    ids = batch["input_ids"]
    marker = torch.tensor(answer_marker(processor))
    after = (ids[:, :-2] == marker[0]) & (ids[:, 1:-1] == marker[1])  # marker at p-2, p-1
    labels = torch.full_like(ids, IGNORE)
    answer_at = torch.zeros_like(ids, dtype=torch.bool)
    answer_at[:, 2:] = after
    eos_at = torch.zeros_like(answer_at)
    eos_at[:, 1:] = answer_at[:, :-1]
    keep = answer_at | eos_at
    labels[keep] = ids[keep]
    expected = [2 * len(t) for t in turns]
    if keep.sum(dim=1).tolist() != expected:
        raise ValueError("every answer must be one word of the tokenizer's vocabulary")
    batch["labels"] = labels
    if all("objects" in it for it in items):
        batch["token_labels"] = torch.from_numpy(
            np.stack([token_labels(o, per_object=relation_labels(o))
                      for o in (it["objects"] for it in items)])
        )  # fmt: skip
    return batch


def _with_families(processor: Any, items: list[dict[str, Any]]) -> Any:
    """:func:`encode_training_batch` plus ``family``: each item's index in ``FAMILIES``."""
    batch = encode_training_batch(processor, items)
    batch["family"] = torch.tensor([FAMILIES.index(it["family"]) for it in items])
    return batch


def train_options(training: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """The ``vissparse testbed train`` options a ``training.json`` records, bar defaults.

    ``--family``, ``--out`` and ``--seed`` are left out, and so are the options named in
    ``skip`` (as ``"--steps"``).

    Example:
        >>> train_options({"family": "llava", "steps": 900, "lr": 0.0015, "aux_key": True,
        ...                "lm_relation": True, "lm_relation_late": True,
        ...                "family_weights": {"counting": 3}})
        ['--steps 900', '--aux-key', '--family-weight counting=3']
        >>> train_options({"family": "llava", "steps": 1500})  # from before --lm-relation
        ['--no-lm-relation']
        >>> train_options({"family": "qwen2_vl", "lm_relation": True, "lm_relation_late": True,
        ...                "architecture": {"vision": {"depth": 3}}})  # older runs
        ['--padding-side left', '--arch vision.depth=3']
    """
    from vissparse.testbed.models import ARCHITECTURES, flat_architecture

    family = training["family"]
    defaults = {"steps": DEFAULT_STEPS[family], "vision_steps": DEFAULT_VISION_STEPS[family],
                **TRAIN_DEFAULTS}  # fmt: skip
    words = []
    for key, default in defaults.items():
        value = training.get(key, default)
        if value != default:
            words.append(f"--{key.replace('_', '-')} {value:.12g}" if isinstance(value, float)
                         else f"--{key.replace('_', '-')} {value}")  # fmt: skip
    for key, default in TRAIN_SWITCHES.items():
        value = bool(training.get(key, False))
        if key == "lm_relation_late" and not training.get("lm_relation"):
            continue  # it delays the lm_relation target: nothing to say without one
        if value != default:
            words.append(f"--{'' if value else 'no-'}{key.replace('_', '-')}")
    words += [f"--family-weight {f}={n}" for f, n in (training.get("family_weights") or {}).items()]
    side = training.get("padding_side", "left")
    if side != DEFAULT_PADDING_SIDE[family]:
        words.append(f"--padding-side {side}")
    recorded = flat_architecture(training.get("architecture", {}))
    for key, default in flat_architecture(ARCHITECTURES[family]).items():
        if recorded.get(key, default) != default:
            words.append(f"--arch {key}={json.dumps(recorded[key]).replace(' ', '')}")
    return [w for w in words if w.split()[0] not in skip]


def trained_on(training: dict[str, Any]) -> str:
    """Where the run that ``training.json`` records trained: its GPU, else its CPU and cores.

    Example:
        >>> trained_on({"accelerator": "cpu", "machine": {"cpu_model": "AMD EPYC", "cpu_count": 2}})
        'AMD EPYC, 2 cores'
    """
    machine = training.get("machine", {})
    gpu = machine.get("gpu") if training.get("accelerator") == "gpu" else None
    return gpu or f"{machine.get('cpu_model') or 'CPU'}, {machine.get('cpu_count', '?')} cores"


def train(
    family: str,
    out: str | os.PathLike[str],
    seed: int = 0,
    steps: int = 1300,
    batch_size: int = 32,
    lr: float = 1.5e-3,
    warmup: int = 100,
    precision: Any = "bf16-mixed",
    accelerator: str = "cpu",
    workers: int = 1,
    progress: bool = True,
    extra_turns: int = 20,
    clutter_ramp: float = 0.3,
    objects_ramp: float = 0.3,
    family_ramp: float = 0.45,
    vision_steps: int = 0,
    val_questions: int = 200,
    val_every: int = 100,
    aux_weight: float = 0.5,
    aux_key: bool = False,
    family_weights: dict[str, int] | None = None,
    aux_relation: bool = False,
    lm_relation: bool = False,
    lm_relation_late: bool = False,
    padding_side: str = "left",
    changes: dict[str, Any] | None = None,
) -> Path:
    """Train a testbed model of ``family`` and save it (model, processor, training log).

    Every ``val_every`` steps, ``val_questions`` single-turn questions of the ``val``
    split are scored teacher-forced (is the most likely next token the answer?) and
    logged as ``val/accuracy``, and per question family as ``val/accuracy/FAMILY``; this
    reads the model only and changes no weight.
    ``aux_key`` adds the key-cell target (one cell per object, see ``token_labels``) to
    the auxiliary loss; ``aux_relation`` adds the colour of the object left of and above
    each object token (see ``relation_labels``) to the auxiliary loss; ``lm_relation``
    asks the same of the image tokens' hidden states half-way through the language
    model (from the language model's first step, or with ``lm_relation_late`` from the
    first step whose items may ask relation questions); ``family_weights`` asks some
    families' balanced questions more often (see :class:`QuestionStream`).
    ``padding_side`` pads the training batches (see ``DEFAULT_PADDING_SIDE``; validation
    stays left-padded); ``changes`` alter the family's architecture, as
    ``{"vision.depth": 3}`` (see :func:`~vissparse.testbed.models.architecture`).

    Writes ``out/`` with the safetensors checkpoint and processor files (loadable by
    ``VisSparse(base_model=out)``), ``out/training.json`` (settings, seconds, machine)
    and ``out/logs/`` (the loss per step, CSV). Returns ``out``.
    """
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from vissparse.bench.checks import check_count, check_number
    from vissparse.bench.report import check_writable, machine_description
    from vissparse.testbed.models import IMAGE_TOKEN_MODULE, architecture, build_model

    for name, value in (("steps", steps), ("batch_size", batch_size), ("warmup", warmup),
                        ("val_every", val_every)):  # fmt: skip
        check_count(value, name)
    for name, value in (("extra_turns", extra_turns), ("val_questions", val_questions)):
        check_count(value, name, least=0)
    check_number(lr, "lr", 0)
    check_number(aux_weight, "aux_weight", 0, include_low=True)
    for name, ramp in (("clutter_ramp", clutter_ramp), ("objects_ramp", objects_ramp),
                       ("family_ramp", family_ramp)):  # fmt: skip
        check_number(ramp, name, 0, 1, include_low=True)  # a share of the items
    if (
        isinstance(vision_steps, bool)
        or not isinstance(vision_steps, int)
        or not (0 <= vision_steps < steps)
    ):
        raise ValueError(f"`vision_steps` must be an int in [0, steps), got {vision_steps!r}")
    if vision_steps and not aux_weight:
        raise ValueError("`vision_steps` trains on the auxiliary loss: give `aux_weight` > 0")
    if lm_relation_late and not lm_relation:
        raise ValueError("`lm_relation_late` delays the `lm_relation` target: give both")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers not in (0, 1):
        # each worker would replay the whole stream, out of the curricula's order
        raise ValueError(f"`workers` must be 0 or 1 (the stream is one ordered sequence), "
                         f"got {workers!r}")  # fmt: skip
    family_weights = check_family_weights(family_weights)
    arch = architecture(family, changes)
    check_padding_side(padding_side)
    lm_items = (steps - vision_steps) * batch_size
    stream = QuestionStream(seed, extra_turns=extra_turns, warm_items=vision_steps * batch_size,
                            clutter_ramp=int(clutter_ramp * lm_items),
                            objects_ramp=int(objects_ramp * lm_items),
                            family_ramp=int(family_ramp * lm_items),
                            family_weights=family_weights)  # fmt: skip
    relation_from = vision_steps if lm_relation else None  # the LM's first step
    if lm_relation_late:  # the first step whose last item may ask a relation question
        last_items = (((s + 1) * batch_size - 1, s) for s in range(vision_steps, steps))
        relation_from = next((s for i, s in last_items if "relation" in stream.families(i)),
                             None)  # fmt: skip
        if relation_from is None:
            raise ValueError("`lm_relation_late`: no step asks relation questions (is "
                             f"`family_ramp` {family_ramp!r} below 1?)")  # fmt: skip
    out = check_writable(out, folder=True, name="`out`")  # every argument checked: now make it
    L.seed_everything(seed, workers=True, verbose=False)
    model, processor = build_model(family, seed, changes)
    model.train()
    loader = DataLoader(
        stream,
        batch_size=batch_size, num_workers=workers,
        collate_fn=lambda qs: encode_training_batch(processor, qs, padding_side),
        persistent_workers=workers > 0,
    )  # fmt: skip
    val_items = make_questions(val_questions, seed, "val") if val_questions else []
    val_loader: DataLoader[Any] = DataLoader(val_items, batch_size=50,  # type: ignore[arg-type]
                            collate_fn=lambda qs: _with_families(processor, qs))  # fmt: skip
    trainer = L.Trainer(
        max_steps=steps, accelerator=accelerator, devices=1, precision=precision,
        val_check_interval=val_every if val_items else None,
        limit_val_batches=1.0 if val_items else 0, num_sanity_val_steps=0,
        logger=CSVLogger(out, name="logs", version=""), enable_checkpointing=False,
        log_every_n_steps=10, gradient_clip_val=1.0, enable_progress_bar=progress,
        enable_model_summary=False,
    )  # fmt: skip
    start = time.perf_counter()
    module = testbed_training(model, IMAGE_TOKEN_MODULE[family], lr, steps, warmup, aux_weight,
                               vision_steps, aux_key, aux_relation, lm_relation,
                              relation_from or 0)  # fmt: skip
    trainer.fit(module, loader,
                val_dataloaders=val_loader if val_items else None)  # fmt: skip
    seconds = time.perf_counter() - start
    model = model.to("cpu", torch.float32).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    make_portable(out, family)  # the layout vLLM and the llava-hf checkpoints use
    info = {
        "family": family, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
        "warmup": warmup, "extra_turns": extra_turns, "clutter_ramp": clutter_ramp,
        "objects_ramp": objects_ramp, "family_ramp": family_ramp,
        "vision_steps": vision_steps,
        "aux_weight": aux_weight, "aux_place_weight": AUX_PLACE_WEIGHT, "aux_key": aux_key,
        "aux_relation": aux_relation, "lm_relation": lm_relation,
        "lm_relation_late": lm_relation_late, "lm_relation_from": relation_from,
        "family_weights": family_weights,
        "aux_place_frequencies": list(AUX_PLACE_FREQUENCIES),
        "precision": precision, "padding_side": padding_side,
        "accelerator": accelerator,
        "train_seconds": round(seconds, 1), "machine": machine_description(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "architecture": arch, "questions_seen": steps * batch_size,
    }  # fmt: skip
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
