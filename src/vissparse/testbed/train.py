"""Training the testbed VLMs with Lightning on an endless stream of generated questions.

Each training item is a multi-turn conversation about one scene, as in LLaVA's
instruction tuning: the balanced question of :func:`make_question` first, then up to
``extra_turns`` questions derived from the same scene. The loss is next-token
cross-entropy on each answer word and its end-of-turn token only (prompt and image
tokens are not predicted), plus a dense auxiliary loss on the image tokens (see
``TestbedTraining``); the background clutter follows a curriculum (``QuestionStream``).
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
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from vissparse.testbed.derived import conversation, relation_labels
from vissparse.testbed.questions import FAMILIES, make_question, make_questions
from vissparse.testbed.scenes import COLORS, MAX_OBJECTS, SHAPES, token_labels

IGNORE = -100
DEFAULT_STEPS = {"llava": 1500, "qwen2_vl": 1000}  # the shipped checkpoints' settings
DEFAULT_VISION_STEPS = {"llava": 400, "qwen2_vl": 200}  # of those, on the vision side alone
# The other defaults of ``vissparse testbed train`` (its flags read them, and
# ``train_options`` leaves out what equals them)
TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 1.5e-3, "batch_size": 32, "warmup": 100, "aux_weight": 0.5, "extra_turns": 20,
    "clutter_ramp": 0.3, "objects_ramp": 0.3, "family_ramp": 0.45,
    "precision": "bf16-mixed", "accelerator": "cpu",
}  # fmt: skip
# Object cells are a few percent of the image tokens: the auxiliary loss weighs their
# classes this much more than the background class so that they are not drowned out.
AUX_OBJECT_WEIGHT = 5.0
# The question families in the order training introduces them (``family_ramp``): the
# language model first learns to find an object named in the question, then to count
# them, then where they are. Asking everything from the start stalled near the text-only
# level in our development runs (see the README).
FAMILY_STAGES = (("attribute",), ("existence", "counting"), ("relation", "position"))
AUX_PLACE_WEIGHT = 1.0  # of the object tokens' place (x, y in [-1, 1]) in the aux loss
# The place target also holds sin and cos of pi * f * x (and y) for these f: a dot
# product of two tokens' features then peaks where they share a row or a column, which
# is what relation questions ask the language model to find (see ``place_features``).
AUX_PLACE_FREQUENCIES = (0.5, 1, 2, 4)
# The columns of ``encode_training_batch``'s ``token_labels``: colour, shape, key (see
# ``token_labels``), then the colour of the object left of and above the cell's object
# (``relation_labels``); the last two are aux targets with ``aux_relation`` only.
LABEL_COLUMNS = ("color", "shape", "key", "left", "above")


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


def encode_training_batch(processor: Any, items: list[dict[str, Any]]) -> Any:
    """Processor outputs plus ``labels`` on every answer word and its end-of-turn token.

    An item is a question dict; with ``"turns"`` (a list of ``(question, answer)``) it
    is a multi-turn conversation about its image. Everything else is ``-100``.
    """
    turns = [it.get("turns") or [(it["question"], it["answer"])] for it in items]
    texts = [conversation_text(processor, t) for t in turns]
    batch = processor(images=[it["image"] for it in items], text=texts, padding=True,
                      padding_side="left", return_tensors="pt")  # fmt: skip
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


def _ramp(at: int, span: int) -> float:
    """How far a curriculum of ``span`` items has grown at item ``at`` (0 to 1).

    Items before the ramp (``at < 0``) and every item when ``span`` is 0 are at 1.

    >>> _ramp(50, 200), _ramp(400, 200), _ramp(-3, 200), _ramp(7, 0)
    (0.25, 1.0, 1.0, 1.0)
    """
    return min(1.0, at / span) if span and at >= 0 else 1.0


class QuestionStream(IterableDataset):
    """Training items: ``make_question(i, seed, "train")`` for ``i = start, start+1, ...``.

    With ``clutter_ramp = R`` the background clutter of item ``i`` is ``min(1, i / R)``:
    the first scenes are drawn on a plain background and the texture and noise grow to
    the held-out level by item ``R`` (a curriculum; held-out scenes are always at 1).
    With ``objects_ramp = R`` the most objects a scene may hold grows likewise from 2 to
    ``MAX_OBJECTS`` by item ``R``. With ``family_ramp = R`` the question families come in
    the stages of ``FAMILY_STAGES``, evenly spaced over the first ``R`` items (first
    attribute only, every family from item ``R`` on), for the balanced
    question and the derived turns alike; each family then draws its questions in order.
    The ramps start after ``warm_items`` items at full difficulty (the vision stage).
    ``family_weights`` (family -> n) asks the balanced question of a family ``n`` times
    per cycle instead of once (the derived turns are unchanged); families not named
    keep 1.
    With ``extra_turns > 0`` each item also carries ``turns``: its own question then up
    to that many derived questions about the same scene (see
    :func:`vissparse.testbed.derived.conversation`), drawn from a stream seeded by
    ``(seed, i)``.
    """

    def __init__(
        self,
        seed: int,
        start: int = 0,
        extra_turns: int = 0,
        clutter_ramp: int = 0,
        objects_ramp: int = 0,
        family_ramp: int = 0,
        warm_items: int = 0,
        family_weights: dict[str, int] | None = None,
    ) -> None:
        self.seed, self.start, self.extra_turns = seed, start, extra_turns
        self.family_weights = check_family_weights(family_weights)
        self.clutter_ramp, self.objects_ramp = clutter_ramp, objects_ramp
        self.family_ramp, self.warm_items = family_ramp, warm_items

    def families(self, i: int) -> tuple[str, ...]:
        """The question families item ``i`` may ask (all of them once the ramp is over).

        A family of weight ``n`` (``family_weights``) is listed ``n`` times in a row.
        """
        i -= self.warm_items
        allowed: tuple[str, ...] = FAMILIES
        if self.family_ramp and 0 <= i < self.family_ramp:
            last = len(FAMILY_STAGES) - 1
            stage = min(last, int(i * last / self.family_ramp))
            allowed = tuple(f for group in FAMILY_STAGES[: stage + 1] for f in group)
        weights = self.family_weights
        return tuple(f for f in allowed for _ in range(weights.get(f, 1)))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        i = self.start
        drawn: dict[str, int] = {}  # next question per family, once the family ramp starts
        while True:
            families = self.families(i)
            if families != FAMILIES and not drawn:  # past every index used so far
                drawn = dict.fromkeys(FAMILIES, -(-i // len(FAMILIES)))
            if drawn:
                family = families[i % len(families)]
                index = drawn[family] * len(FAMILIES) + FAMILIES.index(family)
                drawn[family] += 1
            else:
                index = i
            at = i - self.warm_items  # the first ``warm_items`` are at full difficulty
            clutter = _ramp(at, self.clutter_ramp)
            top = 2 + int(_ramp(at, self.objects_ramp) * (MAX_OBJECTS - 2) + 0.5)
            item = make_question(index, self.seed, "train", clutter, top)
            if self.extra_turns:
                rng = np.random.default_rng([self.seed, i, 7])
                item["turns"] = conversation(item, rng, self.extra_turns, families)
            yield item
            i += 1


def check_family_weights(weights: dict[str, int] | None) -> dict[str, int]:
    """``weights`` checked: question families mapped to ints >= 1 (None: no weights).

    >>> check_family_weights({"counting": 3})
    {'counting': 3}
    """
    weights = dict(weights or {})
    for family, n in weights.items():
        if family not in FAMILIES:
            raise ValueError(f"`family_weights` names {family!r}; expected one of {FAMILIES}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"`family_weights[{family!r}]` must be an int >= 1, got {n!r}")
    return weights


def train_options(training: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """The ``vissparse testbed train`` options a ``training.json`` records, bar defaults.

    ``--family``, ``--out`` and ``--seed`` are left out, and so are the options named in
    ``skip`` (as ``"--steps"``).

    Example:
        >>> train_options({"family": "llava", "steps": 900, "lr": 0.0015, "aux_key": True,
        ...                "family_weights": {"counting": 3}})
        ['--steps 900', '--aux-key', '--family-weight counting=3']
    """
    family = training["family"]
    defaults = {"steps": DEFAULT_STEPS[family], "vision_steps": DEFAULT_VISION_STEPS[family],
                **TRAIN_DEFAULTS}  # fmt: skip
    words = []
    for key, default in defaults.items():
        value = training.get(key, default)
        if value != default:
            words.append(f"--{key.replace('_', '-')} {value:.12g}" if isinstance(value, float)
                         else f"--{key.replace('_', '-')} {value}")  # fmt: skip
    words += [f"--{flag}" for flag in ("aux-key", "aux-relation", "lm-relation")
              if training.get(flag.replace("-", "_"))]  # fmt: skip
    words += [f"--family-weight {f}={n}" for f, n in (training.get("family_weights") or {}).items()]
    return [w for w in words if w.split()[0] not in skip]


def _is_lm(name: str) -> bool:
    """Whether a parameter (named from the Lightning module) is the language model's."""
    return ".language_model." in name or ".lm_head." in name


def place_features(xy: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` places in [-1, 1] -> x, y, then sin and cos of pi * f * (x, y).

    The auxiliary loss regresses these from each object token. With the sinusoids, the
    dot product of two tokens' features holds ``cos(pi * f * (y - y'))``, which peaks
    where the two share a row: one attention step can then find "the object left of"
    another, as rotary embeddings let attention find a relative position.

    Example:
        >>> place_features(torch.zeros(2)).tolist()[:4]
        [0.0, 0.0, 0.0, 0.0]
    """
    angles = torch.cat([math.pi * f * xy for f in AUX_PLACE_FREQUENCIES], dim=-1)
    return torch.cat([xy, angles.sin(), angles.cos()], dim=-1)


def _schedule(start: int, steps: int, warmup: int) -> Any:
    """Linear warm-up from step ``start``, then cosine decay to 5% at ``steps``."""

    def factor(step: int) -> float:
        if step < start:
            return 0.0
        if step - start < warmup:
            return (step - start + 1) / warmup
        progress = (step - start - warmup) / max(1, steps - start - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _lightning_module(
    model: Any,
    image_module: str,
    lr: float,
    steps: int,
    warmup: int,
    aux_weight: float,
    vision_steps: int = 0,
    aux_key: bool = False,
    aux_relation: bool = False,
    lm_relation: bool = False,
) -> Any:
    import lightning as L

    class TestbedTraining(L.LightningModule):
        """The HF model plus a throw-away head that reads each image token's class.

        The auxiliary head predicts the (colour, shape, key) labels of every image token
        (and each object token's place, and with ``aux_relation`` the colour of the
        object left of and above it, see ``relation_labels``) from
        the tokens the language model receives (see ``token_labels``): dense supervision
        for the vision side, in place of the pretrained encoder real VLMs start from. It
        is separate from the word embeddings and is not saved with the checkpoint.
        With ``lm_relation``, a second throw-away head reads the left / above colours
        from the image tokens' hidden states after the first half of the language
        model's layers, where it can compare an object with its neighbours.
        """

        place_target: torch.Tensor  # [cells, place features], a buffer

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            width = model.config.text_config.hidden_size
            grid = 16
            cell = torch.arange(grid * grid)
            xy = torch.stack([cell % grid, cell // grid], dim=-1).float()
            # each cell's place target, computed once
            target = place_features((xy + 0.5) / grid * 2 - 1)
            self.register_buffer("place_target", target, persistent=False)
            # the key-cell and relation targets only where asked for: the head's shape
            # (and so its random initial weights) is otherwise that of earlier runs
            colors, shapes = 1 + len(COLORS), 1 + len(SHAPES)
            heads = {"color": colors, "shape": shapes, "key": 2, "left": colors, "above": colors}
            used = ["color", "shape", *["key"] * aux_key, *["left", "above"] * aux_relation]
            self.columns = [LABEL_COLUMNS.index(name) for name in used]
            self.classes = [heads[name] for name in used] + [target.shape[-1]]
            self.aux_head = torch.nn.Linear(width, sum(self.classes))
            self._tokens: list[torch.Tensor] = []
            model.get_submodule(image_module).register_forward_hook(
                lambda mod, args, out: self._tokens.append(out)
            )
            self._hidden: list[torch.Tensor] = []
            if lm_relation:
                layers = model.model.language_model.layers
                layers[len(layers) // 2 - 1].register_forward_hook(
                    lambda mod, args, out: self._hidden.append(
                        out[0] if isinstance(out, tuple) else out
                    )
                )
                self.relation_head = torch.nn.Linear(width, 2 * colors)

        def _aux_loss(self, labels: torch.Tensor) -> torch.Tensor:
            tokens = self._tokens[-1].reshape(labels.shape[0], labels.shape[1], -1)
            logits = self.aux_head(tokens.float())
            *classes, place = logits.split(self.classes, dim=-1)
            loss = logits.new_zeros(())
            on_object = labels[..., 0] > 0
            for column, part in zip(self.columns, classes, strict=True):
                weight = torch.full((part.shape[-1],), AUX_OBJECT_WEIGHT, device=part.device)
                # class 0: background (key: every cell but the key; left and above: no
                # such object, and those two are scored on object cells only)
                weight[0] = 1.0
                target = labels[..., column]
                if LABEL_COLUMNS[column] in ("left", "above"):
                    if not bool(on_object.any()):
                        continue
                    part, target = part[on_object][None], target[on_object][None]
                loss = loss + torch.nn.functional.cross_entropy(
                    part.flatten(0, 1), target.flatten(), weight=weight
                )
            if bool(on_object.any()):
                target = self.place_target.expand(*labels.shape[:2], -1)
                loss = loss + AUX_PLACE_WEIGHT * torch.nn.functional.mse_loss(
                    place[on_object], target[on_object]
                )
            return loss

        def _relation_loss(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            """Cross-entropy of the left / above colours read from the LM's image tokens."""
            image = input_ids == model.config.image_token_id
            hidden = self._hidden[-1][image].reshape(*labels.shape[:2], -1)
            logits = self.relation_head(hidden.float()).unflatten(-1, (2, -1))
            on_object = labels[..., 0] > 0
            weight = torch.full((logits.shape[-1],), AUX_OBJECT_WEIGHT, device=logits.device)
            weight[0] = 1.0  # no such object
            return torch.nn.functional.cross_entropy(
                logits[on_object].flatten(0, 1), labels[..., 3:5][on_object].flatten(),
                weight=weight,
            )  # fmt: skip

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            # teacher-forced: is the most likely token after the prompt the answer word?
            labels = batch.pop("labels")
            batch.pop("token_labels", None)
            family = batch.pop("family", None)
            logits = self.model(**batch).logits[:, -3]
            self._tokens.clear()
            self._hidden.clear()
            right = (logits.argmax(-1) == labels[:, -2]).float()
            self.log("val/accuracy", right.mean(), prog_bar=True, batch_size=len(labels))
            for k, name in enumerate(FAMILIES if family is not None else ()):
                mine = family == k  # each family's share, to see which ones it has learned
                if bool(mine.any()):
                    self.log(f"val/accuracy/{name}", right[mine].mean(),
                             batch_size=int(mine.sum()))  # fmt: skip

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            token_labels = batch.pop("token_labels", None)
            self._tokens.clear()
            n = len(batch["labels"])
            if self.global_step < vision_steps:  # the vision side alone, on the aux loss
                images = {k: batch[k] for k in ("pixel_values", "image_grid_thw") if k in batch}
                self.model.model.get_image_features(**images)
                aux = self._aux_loss(token_labels)
                self.log("train/aux_loss", aux, on_step=True, batch_size=n)
                self._tokens.clear()
                return aux
            loss = self.model(**batch).loss
            self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=n)
            if aux_weight and token_labels is not None:
                aux = self._aux_loss(token_labels)
                self.log("train/aux_loss", aux, on_step=True, batch_size=n)
                loss = loss + aux_weight * aux
            if lm_relation and token_labels is not None and bool((token_labels[..., 0] > 0).any()):
                relation = self._relation_loss(batch["input_ids"], token_labels)
                self.log("train/relation_loss", relation, on_step=True, batch_size=n)
                loss = loss + aux_weight * relation
            self._tokens.clear()
            self._hidden.clear()
            return loss

        def configure_optimizers(self) -> Any:
            # the language model's schedule starts when it does, after the vision stage
            groups, factors = [], []
            for lm in (False, True):
                named = [(n, p) for n, p in self.named_parameters() if _is_lm(n) == lm]
                for decay in (True, False):
                    groups.append({"params": [p for _, p in named if (p.ndim >= 2) == decay],
                                   "weight_decay": 0.05 if decay else 0.0})  # fmt: skip
                    factors.append(_schedule(vision_steps if lm else 0, steps, warmup))
            opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, factors)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return TestbedTraining()


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
    model; ``family_weights`` asks some families' balanced questions more often (see
    :class:`QuestionStream`).

    Writes ``out/`` with the safetensors checkpoint and processor files (loadable by
    ``VisSparse(base_model=out)``), ``out/training.json`` (settings, seconds, machine)
    and ``out/logs/`` (the loss per step, CSV). Returns ``out``.
    """
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from vissparse.bench.report import machine_description
    from vissparse.testbed.models import ARCHITECTURES, IMAGE_TOKEN_MODULE, build_model

    for name, value in (("steps", steps), ("batch_size", batch_size), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (
        isinstance(vision_steps, bool)
        or not isinstance(vision_steps, int)
        or not (0 <= vision_steps < steps)
    ):
        raise ValueError(f"`vision_steps` must be an int in [0, steps), got {vision_steps!r}")
    if vision_steps and not aux_weight:
        raise ValueError("`vision_steps` trains on the auxiliary loss: give `aux_weight` > 0")
    family_weights = check_family_weights(family_weights)
    lm_items = (steps - vision_steps) * batch_size
    L.seed_everything(seed, workers=True, verbose=False)
    model, processor = build_model(family, seed)
    model.train()
    loader = DataLoader(
        QuestionStream(seed, extra_turns=extra_turns, warm_items=vision_steps * batch_size,
                       clutter_ramp=int(clutter_ramp * lm_items),
                       objects_ramp=int(objects_ramp * lm_items),
                       family_ramp=int(family_ramp * lm_items),
                       family_weights=family_weights),
        batch_size=batch_size, num_workers=workers,
        collate_fn=lambda qs: encode_training_batch(processor, qs),
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
    module = _lightning_module(model, IMAGE_TOKEN_MODULE[family], lr, steps, warmup, aux_weight,
                               vision_steps, aux_key, aux_relation, lm_relation)  # fmt: skip
    trainer.fit(module, loader,
                val_dataloaders=val_loader if val_items else None)  # fmt: skip
    seconds = time.perf_counter() - start
    model = model.to("cpu", torch.float32).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {
        "family": family, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
        "warmup": warmup, "extra_turns": extra_turns, "clutter_ramp": clutter_ramp,
        "objects_ramp": objects_ramp, "family_ramp": family_ramp,
        "vision_steps": vision_steps,
        "aux_weight": aux_weight, "aux_place_weight": AUX_PLACE_WEIGHT, "aux_key": aux_key,
        "aux_relation": aux_relation, "lm_relation": lm_relation,
        "family_weights": family_weights,
        "aux_place_frequencies": list(AUX_PLACE_FREQUENCIES),
        "precision": precision,
        "accelerator": accelerator,
        "train_seconds": round(seconds, 1), "machine": machine_description(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "architecture": ARCHITECTURES[family], "questions_seen": steps * batch_size,
    }  # fmt: skip
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
