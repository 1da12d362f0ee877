"""What the HF pipeline returns: the pruned batch the model is fed, and the answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from vissparse.llm.schedule import average_tokens


@dataclass
class PrunedBatch:
    """Exactly what the language model receives after pruning.

    Attributes:
        inputs_embeds: ``[B, L', D]`` (drop mode: shorter; mask mode: full length).
        attention_mask: ``[B, L']``.
        position_ids: original positions of the kept tokens, ``[B, L']`` or ``[3, B, L']``.
        image_keep: one bool mask per image over that image's tokens (on the model's
            device; :meth:`keep_masks_per_row` reads them to the CPU).
        image_sample: the batch row of each image.
        n_image_tokens: image tokens per row before pruning.
        n_kept: image tokens per row after pruning.
        kv_tokens: tokens per row the KV cache holds after prefill (drop mode: text plus
            kept image tokens; mask mode: the whole unpruned prompt).
        signal_ms: time spent computing vision attention signals in the encoder's hook
            (0 when the method needs none).
        image_tokens_per_layer: per row, the image tokens each language-model layer
            sees (``stage="llm"``: every token below the stage's layer, the kept ones
            from it on; ``stage="input"``: the kept ones in every layer).
        llm_ms: ``stage="llm"``: time spent in the pruning hooks inside the language
            model (text attention, scoring, selection, gathers, masks).
        token_type_ids: ``[B, L']`` 1 on image tokens, for families that read it (Gemma 3).
        layer_additions: ``[B, L', D]`` tensors added after the language model's first
            layers (Qwen3-VL's DeepStack), packed like ``inputs_embeds``; feed the batch
            inside :meth:`HFPipeline.feeding` so they are added.
        input_ids: ``[B, L']`` the prompt's token ids packed like ``inputs_embeds`` (drop
            mode: without the pruned image tokens), given to ``generate`` with the
            embeddings so logits processors and stopping criteria (repetition penalty,
            n-gram bans, ...) see the prompt as they do without VisSparse.
    """

    inputs_embeds: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    image_keep: list[Tensor]
    image_sample: list[int]
    n_image_tokens: list[int]
    n_kept: list[int]
    kv_tokens: list[float]
    signal_ms: float = 0.0
    image_tokens_per_layer: list[list[int]] | None = None
    llm_ms: float = 0.0
    token_type_ids: Tensor | None = None
    layer_additions: list[Tensor] = field(default_factory=list)
    input_ids: Tensor | None = None

    def avg_image_tokens(self) -> list[float]:
        """Per row, the image tokens a language-model layer sees on average."""
        if self.image_tokens_per_layer is None:
            return [float(k) for k in self.n_kept]
        return [average_tokens(row) for row in self.image_tokens_per_layer]

    def keep_masks_per_row(self, n_rows: int) -> list[list[Tensor]]:
        """Per prompt row, the keep masks of its images (in order), on the CPU.

        ``image_keep`` stays on the device during the call (no host wait); this reads it.
        """
        per_row: list[list[Tensor]] = [[] for _ in range(n_rows)]
        for row, kept in zip(self.image_sample, self.image_keep, strict=True):
            per_row[row].append(kept.cpu())
        return per_row

    def model_inputs(self) -> dict[str, Tensor]:
        """Keyword arguments for ``model(...)`` / ``model.generate(...)``."""
        out = {
            "inputs_embeds": self.inputs_embeds,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }
        if self.token_type_ids is not None:  # Gemma 3: image tokens attend both ways
            out["token_type_ids"] = self.token_type_ids
        return out

    def generate_inputs(self) -> dict[str, Tensor]:
        """Keyword arguments for ``model.generate(...)``: :meth:`model_inputs` and the ids.

        ``generate`` runs the prefill on the embeddings and hands ``input_ids`` to its
        logits processors and stopping criteria; it returns them before the new tokens.
        """
        out = self.model_inputs()
        if self.input_ids is not None:
            out["input_ids"] = self.input_ids
        return out

    def prompt_length(self) -> int:
        """Columns of the prompt ``generate`` returns before the new tokens."""
        return 0 if self.input_ids is None else int(self.input_ids.shape[1])


@dataclass
class GenerationDetails:
    """The answer of ``generate(..., return_details=True)`` and how it was produced.

    For a single prompt ``text`` is a string and ``keep_mask`` a list with one bool tensor
    per image; for a batch both are lists with one entry per prompt.
    """

    text: Any
    sequences: Tensor
    keep_mask: Any
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallOutput:
    """One answered prompt: the text and how many image tokens the model saw."""

    text: str
    n_kept: int
    n_image_tokens: int
    avg_image_tokens: float | None = None  # stage="llm": image tokens per LM layer, mean


def call_metrics(pruned: PrunedBatch, latency_ms: float) -> dict[str, Any]:
    """The ``metrics`` of ``generate(..., return_details=True)`` for one pruned call."""
    metrics: dict[str, Any] = {
        "latency_ms": latency_ms,
        "n_image_tokens": sum(pruned.n_image_tokens),
        "n_kept": sum(pruned.n_kept),
        # fair accounting: the image tokens a layer sees on average over the layers
        # (before the language model, that is the kept count in every layer)
        "avg_image_tokens": sum(pruned.avg_image_tokens()),
        "effective_keep_ratio": sum(pruned.avg_image_tokens()) / max(1, sum(pruned.n_image_tokens)),
        "signal_ms": pruned.signal_ms,
        "kv_cache_tokens": pruned.kv_tokens,
    }
    if pruned.image_tokens_per_layer is not None:  # stage="llm"
        metrics["llm_ms"] = pruned.llm_ms
        metrics["image_tokens_per_layer"] = pruned.image_tokens_per_layer
    return metrics


def generated_ids(out: Any, prompt_length: int = 0) -> Tensor:
    """The new token ids of ``model.generate``'s output (a tensor, or an output object).

    ``prompt_length``: the columns of prompt ids ``generate`` returns before them (0
    when it was given embeddings only).
    """
    ids = out.sequences if hasattr(out, "sequences") else out
    return ids[:, prompt_length:]
