"""Phase-by-phase timing of one pruned or unpruned call of a HF model.

One call is split into: the vision encoder (with embedding and position ids), the
pruning overhead (query, scoring, selection, dropping), the language model's prefill,
and greedy decoding step by step with the KV cache. Time to first token (TTFT) is
vision + overhead + prefill; end to end is TTFT + all decode steps.

With ``stage="llm"`` the pruning runs inside the language model's prefill: the overhead
is the hooks' own time (text attention, scoring, selection, gathers, masks), and the
prefill is the rest of that call.

A call may hold a batch of prompts (left-padded rows): every count, the KV cache's bytes
and the peak memory are the whole batch's; each row's greedy tokens are recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vissparse.bench.flops import count_flops
from vissparse.hf.pipeline import HFPipeline, PrunedBatch
from vissparse.llm.pruner import LayerPruner


@dataclass
class CallTiming:
    """Measurements of one call (milliseconds, bytes)."""

    vision_ms: float
    overhead_ms: float
    prefill_ms: float
    ttft_ms: float
    decode_ms: list[float] = field(default_factory=list)
    kv_cache_bytes: int = 0
    peak_memory_bytes: int | None = None
    sequence_length: int = 0
    tokens: list[int] = field(default_factory=list)  # the first row's greedy tokens
    batch_tokens: list[list[int]] = field(default_factory=list)  # every row's
    signal_ms: float = 0.0  # vision attention signals, inside vision_ms
    layer_lengths: list[int] = field(default_factory=list)  # tokens each LM layer runs on
    image_tokens_per_layer: list[int] = field(default_factory=list)  # summed over the batch
    padded_length: int = 0  # compiled: the prompt's bucket (0: not padded)

    @property
    def e2e_ms(self) -> float:
        """Time to first token plus every decode step."""
        return self.ttft_ms + sum(self.decode_ms)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cache_bytes(cache: Any) -> int:
    """Bytes held by the keys and values of a transformers KV cache."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def _lm_inputs(
    pipe: HFPipeline, inputs: Any, emb: Any, prompt_mask: Tensor, prune: bool, vision: Any = None
) -> tuple[PrunedBatch, LayerPruner | None]:
    """The language model's batch, and the hooks that prune inside it (``stage="llm"``)."""
    if prune and pipe.schedule is not None:
        pruner = pipe.llm_pruner(emb, prompt_mask, None, pipe.layouts(inputs, emb), vision)
        return pipe.unpruned(emb), pruner
    if prune:
        layouts = pipe.layouts(inputs, emb)
        return pipe.select_and_apply(emb, prompt_mask, layouts=layouts, vision=vision), None
    return pipe.unpruned(emb), None


def start_call(pipe: HFPipeline, inputs: Any, prune: bool) -> tuple[float, float, Any, Any]:
    """A timed call's first phase: ``(t0, t1, embedded, vision signals)``.

    The vision encoder runs between the two timestamps, after the adapter's state and
    CUDA's peak-memory counter are reset, with the device synced on both sides.
    """
    device = pipe.model.device
    pipe.adapter.reset_state()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    emb, vision = pipe.embed(inputs, prune)
    _sync(device)
    return t0, time.perf_counter(), emb, vision


@torch.inference_mode()
def timed_call(
    pipe: HFPipeline, inputs: Any, prompt_mask: Tensor, prune: bool, new_tokens: int
) -> CallTiming:
    """Run one call phase by phase (greedy, ``new_tokens`` tokens) and time each phase."""
    model, device = pipe.model, pipe.model.device
    t0, t1, emb, vision = start_call(pipe, inputs, prune)
    batch, pruner = _lm_inputs(pipe, inputs, emb, prompt_mask, prune, vision)
    lm_in = batch.model_inputs()
    with pipe.feeding(batch, pruner):
        _sync(device)
        t2 = time.perf_counter()
        out = model(**lm_in, use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        _sync(device)
        t3 = time.perf_counter()
        hook_ms = 0.0 if pruner is None else pruner.ms
        timing = _decode(pipe, lm_in, out, token, new_tokens, device)
    length = int(lm_in["attention_mask"].shape[1])
    n_layers = len(pipe.adapter.decoder_layers())
    timing.vision_ms, timing.overhead_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3 + hook_ms
    timing.prefill_ms, timing.ttft_ms = (t3 - t2) * 1e3 - hook_ms, (t3 - t0) * 1e3
    timing.sequence_length = length
    timing.layer_lengths = [length] * n_layers if pruner is None else pruner.kv_lengths()
    timing.signal_ms = 0.0 if vision is None else vision.ms
    if pruner is not None:
        result = pipe.llm_result(pruner, emb, vision)
        assert result.image_tokens_per_layer is not None
        per_row = result.image_tokens_per_layer
        timing.image_tokens_per_layer = [int(sum(layer)) for layer in zip(*per_row, strict=True)]
    else:  # the kept (or, unpruned, all) image tokens of every row, in every layer
        timing.image_tokens_per_layer = [int(sum(int(k) for k in batch.n_kept))] * n_layers
    if device.type == "cuda":
        timing.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    pipe.adapter.reset_state()
    return timing


def _decode(
    pipe: HFPipeline, lm_in: dict[str, Tensor], out: Any, token: Tensor, new_tokens: int,
    device: torch.device,
) -> CallTiming:  # fmt: skip
    """Greedy decoding after the prefill ``out``, each step timed on its own."""
    model = pipe.model
    cache = out.past_key_values
    timing = CallTiming(0.0, 0.0, 0.0, 0.0, kv_cache_bytes=cache_bytes(cache))
    steps = [token]
    mask, positions = lm_in["attention_mask"], lm_in["position_ids"]
    for _ in range(new_tokens - 1):
        positions = positions[..., -1:] + 1
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        start = time.perf_counter()
        out = model(input_ids=token, attention_mask=mask, position_ids=positions,
                    past_key_values=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        _sync(device)
        timing.decode_ms.append((time.perf_counter() - start) * 1e3)
        steps.append(token)
    timing.batch_tokens = torch.cat(steps, dim=1).tolist()  # read once, after the last step
    timing.tokens = timing.batch_tokens[0]
    return timing


@torch.inference_mode()
def prefill_flops(pipe: HFPipeline, inputs: Any, prompt_mask: Tensor, prune: bool) -> int:
    """FLOPs of vision encoder + projector + (pruning) + LM prefill, counted by torch."""

    def run() -> None:
        pipe.adapter.reset_state()
        emb, vision = pipe.embed(inputs, prune)
        batch, pruner = _lm_inputs(pipe, inputs, emb, prompt_mask, prune, vision)
        with pipe.feeding(batch, pruner):
            pipe.model(**batch.model_inputs(), use_cache=True, logits_to_keep=1)

    flops = count_flops(run)
    pipe.adapter.reset_state()
    return flops
