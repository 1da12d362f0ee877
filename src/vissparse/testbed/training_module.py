"""The Lightning module that trains a testbed VLM: answer loss, auxiliary heads, schedule.

``testbed_training(model, ...)`` wraps a testbed HF model for ``vissparse testbed train``
(see :mod:`vissparse.testbed.train`): next-token loss on the answers, a throw-away
auxiliary head on the image tokens the language model receives (their colour, shape and
place), optional relation targets, and AdamW with a warm-up and cosine schedule whose
language-model part starts after the vision stage.

Example:
    >>> place_features(torch.tensor([1.0, -1.0])).shape
    torch.Size([18])
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vissparse.testbed.questions import FAMILIES
from vissparse.testbed.scenes import COLORS, SHAPES

# Object cells are a few percent of the image tokens: the auxiliary loss weighs their
# classes this much more than the background class so that they are not drowned out.
AUX_OBJECT_WEIGHT = 5.0
AUX_PLACE_WEIGHT = 1.0  # of the object tokens' place (x, y in [-1, 1]) in the aux loss
# The place target also holds sin and cos of pi * f * x (and y) for these f: a dot
# product of two tokens' features then peaks where they share a row or a column, which
# is what relation questions ask the language model to find (see ``place_features``).
AUX_PLACE_FREQUENCIES = (0.5, 1, 2, 4)
# The columns of ``encode_training_batch``'s ``token_labels``: colour, shape, key (see
# ``token_labels``), then the colour of the object left of and above the cell's object
# (``relation_labels``); the last two are aux targets with ``aux_relation`` only.
LABEL_COLUMNS = ("color", "shape", "key", "left", "above")


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


def testbed_training(
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
    lm_relation_from: int = 0,
) -> Any:
    """The Lightning module that trains ``model`` (see ``TestbedTraining`` inside).

    ``image_module`` names the module whose output is the image tokens the language model
    receives; ``lr``, ``steps`` and ``warmup`` set AdamW's schedule; ``aux_weight``
    weighs the auxiliary losses; the first ``vision_steps`` train the vision side alone.
    ``aux_key``, ``aux_relation`` and ``lm_relation`` add the optional targets (see
    :func:`vissparse.testbed.train.train`); the ``lm_relation`` loss counts from step
    ``lm_relation_from`` on.

    Example:
        >>> from vissparse.testbed.models import IMAGE_TOKEN_MODULE, build_model
        >>> model, _ = build_model("llava")
        >>> module = testbed_training(model, IMAGE_TOKEN_MODULE["llava"], 1e-3, 10, 1, 0.5)
        >>> type(module).__name__
        'TestbedTraining'
    """
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
            if (
                lm_relation
                and self.global_step >= lm_relation_from
                and token_labels is not None
                and bool((token_labels[..., 0] > 0).any())
            ):
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
