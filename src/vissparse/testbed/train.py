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

from vissparse.testbed.derived import conversation
from vissparse.testbed.questions import make_question, make_questions
from vissparse.testbed.scenes import COLORS, SHAPES, token_labels

IGNORE = -100
DEFAULT_STEPS = {"llava": 1300, "qwen2_vl": 600}  # the shipped checkpoints' settings


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
            np.stack([token_labels(it["objects"]) for it in items])
        )
    return batch


class QuestionStream(IterableDataset):
    """Training items: ``make_question(i, seed, "train")`` for ``i = start, start+1, ...``.

    With ``clutter_ramp = R`` the background clutter of item ``i`` is ``min(1, i / R)``:
    the first scenes are drawn on a plain background and the texture and noise grow to
    the held-out level by item ``R`` (a curriculum; held-out scenes are always at 1).
    With ``extra_turns > 0`` each item also carries ``turns``: its own question then up
    to that many derived questions about the same scene (see
    :func:`vissparse.testbed.derived.conversation`), drawn from a stream seeded by
    ``(seed, i)``.
    """

    def __init__(
        self, seed: int, start: int = 0, extra_turns: int = 0, clutter_ramp: int = 0
    ) -> None:
        self.seed, self.start, self.extra_turns = seed, start, extra_turns
        self.clutter_ramp = clutter_ramp

    def __iter__(self) -> Iterator[dict[str, Any]]:
        i = self.start
        while True:
            clutter = min(1.0, i / self.clutter_ramp) if self.clutter_ramp else 1.0
            item = make_question(i, self.seed, "train", clutter)
            if self.extra_turns:
                rng = np.random.default_rng([self.seed, i, 7])
                item["turns"] = conversation(item, rng, self.extra_turns)
            yield item
            i += 1


def _lightning_module(
    model: Any, image_module: str, lr: float, steps: int, warmup: int, aux_weight: float
) -> Any:
    import lightning as L

    class TestbedTraining(L.LightningModule):
        """The HF model plus a throw-away head that reads each image token's class.

        The auxiliary head predicts the (colour, shape) class of every image token from
        the tokens the language model receives (see ``token_labels``): dense supervision
        for the vision side, in place of the pretrained encoder real VLMs start from. It
        is separate from the word embeddings and is not saved with the checkpoint.
        """

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            width = model.config.text_config.hidden_size
            self.aux_head = torch.nn.Linear(width, 1 + len(COLORS) + 1 + len(SHAPES))
            self._tokens: list[torch.Tensor] = []
            model.get_submodule(image_module).register_forward_hook(
                lambda mod, args, out: self._tokens.append(out)
            )

        def _aux_loss(self, labels: torch.Tensor) -> torch.Tensor:
            tokens = self._tokens[-1].reshape(labels.shape[0], labels.shape[1], -1)
            logits = self.aux_head(tokens.float())
            n_color = 1 + len(COLORS)
            loss_c = torch.nn.functional.cross_entropy(
                logits[..., :n_color].flatten(0, 1), labels[..., 0].flatten()
            )
            loss_s = torch.nn.functional.cross_entropy(
                logits[..., n_color:].flatten(0, 1), labels[..., 1].flatten()
            )
            return loss_c + loss_s

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            # teacher-forced: is the most likely token after the prompt the answer word?
            labels = batch.pop("labels")
            batch.pop("token_labels", None)
            logits = self.model(**batch).logits[:, -3]
            self._tokens.clear()
            right = (logits.argmax(-1) == labels[:, -2]).float().mean()
            self.log("val/accuracy", right, prog_bar=True, batch_size=len(labels))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            token_labels = batch.pop("token_labels", None)
            self._tokens.clear()
            loss = self.model(**batch).loss
            n = len(batch["labels"])
            self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=n)
            if aux_weight and token_labels is not None:
                aux = self._aux_loss(token_labels)
                self.log("train/aux_loss", aux, on_step=True, batch_size=n)
                loss = loss + aux_weight * aux
            self._tokens.clear()
            return loss

        def configure_optimizers(self) -> Any:
            params = list(self.named_parameters())
            decay = [p for n, p in params if p.ndim >= 2]
            rest = [p for n, p in params if p.ndim < 2]
            opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                                     {"params": rest, "weight_decay": 0.0}],
                                    lr=lr, betas=(0.9, 0.98))  # fmt: skip

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = (step - warmup) / max(1, steps - warmup)
                return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
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
    val_questions: int = 200,
    val_every: int = 100,
    aux_weight: float = 0.5,
) -> Path:
    """Train a testbed model of ``family`` and save it (model, processor, training log).

    Every ``val_every`` steps, ``val_questions`` single-turn questions of the ``val``
    split are scored teacher-forced (is the most likely next token the answer?) and
    logged as ``val/accuracy``; this reads the model only and changes no weight.

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
    L.seed_everything(seed, workers=True, verbose=False)
    model, processor = build_model(family, seed)
    model.train()
    loader = DataLoader(
        QuestionStream(seed, extra_turns=extra_turns,
                       clutter_ramp=int(clutter_ramp * steps * batch_size)),
        batch_size=batch_size, num_workers=workers,
        collate_fn=lambda qs: encode_training_batch(processor, qs),
        persistent_workers=workers > 0,
    )  # fmt: skip
    val_items = make_questions(val_questions, seed, "val") if val_questions else []
    val_loader: DataLoader[Any] = DataLoader(val_items, batch_size=50,  # type: ignore[arg-type]
                            collate_fn=lambda qs: encode_training_batch(processor, qs))  # fmt: skip
    trainer = L.Trainer(
        max_steps=steps, accelerator=accelerator, devices=1, precision=precision,
        val_check_interval=val_every if val_items else None,
        limit_val_batches=1.0 if val_items else 0, num_sanity_val_steps=0,
        logger=CSVLogger(out, name="logs", version=""), enable_checkpointing=False,
        log_every_n_steps=10, gradient_clip_val=1.0, enable_progress_bar=progress,
        enable_model_summary=False,
    )  # fmt: skip
    start = time.perf_counter()
    module = _lightning_module(model, IMAGE_TOKEN_MODULE[family], lr, steps, warmup, aux_weight)
    trainer.fit(module, loader,
                val_dataloaders=val_loader if val_items else None)  # fmt: skip
    seconds = time.perf_counter() - start
    model = model.to("cpu", torch.float32).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {
        "family": family, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
        "warmup": warmup, "extra_turns": extra_turns, "clutter_ramp": clutter_ramp,
        "aux_weight": aux_weight,
        "precision": precision,
        "accelerator": accelerator,
        "train_seconds": round(seconds, 1), "machine": machine_description(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "architecture": ARCHITECTURES[family], "questions_seen": steps * batch_size,
    }  # fmt: skip
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
