"""Phase-by-phase timing of one pruned or unpruned call of a HF model.

One call is split into: the vision encoder (with embedding and position ids), the
pruning overhead (query, scoring, selection, dropping), the language model's prefill,
and greedy decoding step by step with the KV cache. Time to first token (TTFT) is
vision + overhead + prefill; end to end is TTFT + all decode steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vissparse.bench.flops import count_flops
from vissparse.hf.pipeline import HFPipeline


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
    tokens: list[int] = field(default_factory=list)
    signal_ms: float = 0.0  # vision attention signals, inside vision_ms

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
) -> dict[str, Tensor]:
    if prune:
        layouts = pipe.layouts(inputs, emb)
        pruned = pipe.select_and_apply(emb, prompt_mask, layouts=layouts, vision=vision)
        return pruned.model_inputs()
    return {"inputs_embeds": emb.inputs_embeds, "attention_mask": emb.attention_mask,
            "position_ids": emb.position_ids}  # fmt: skip


@torch.inference_mode()
def timed_call(
    pipe: HFPipeline, inputs: Any, prompt_mask: Tensor, prune: bool, new_tokens: int
) -> CallTiming:
    """Run one call phase by phase (greedy, ``new_tokens`` tokens) and time each phase."""
    model, device = pipe.model, pipe.model.device
    pipe.adapter.reset_state()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    emb, vision = pipe.embed(inputs, prune)
    _sync(device)
    t1 = time.perf_counter()
    lm_in = _lm_inputs(pipe, inputs, emb, prompt_mask, prune, vision)
    _sync(device)
    t2 = time.perf_counter()
    out = model(**lm_in, use_cache=True, logits_to_keep=1)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    _sync(device)
    t3 = time.perf_counter()
    cache = out.past_key_values
    timing = CallTiming(
        vision_ms=(t1 - t0) * 1e3, overhead_ms=(t2 - t1) * 1e3, prefill_ms=(t3 - t2) * 1e3,
        ttft_ms=(t3 - t0) * 1e3, kv_cache_bytes=cache_bytes(cache),
        sequence_length=int(lm_in["attention_mask"].shape[1]), tokens=[int(token[0, 0])],
        signal_ms=0.0 if vision is None else vision.ms,
    )  # fmt: skip
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
        timing.tokens.append(int(token[0, 0]))
    if device.type == "cuda":
        timing.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    pipe.adapter.reset_state()
    return timing


@torch.inference_mode()
def prefill_flops(pipe: HFPipeline, inputs: Any, prompt_mask: Tensor, prune: bool) -> int:
    """FLOPs of vision encoder + projector + (pruning) + LM prefill, counted by torch."""

    def run() -> None:
        pipe.adapter.reset_state()
        emb, vision = pipe.embed(inputs, prune)
        lm_in = _lm_inputs(pipe, inputs, emb, prompt_mask, prune, vision)
        pipe.model(**lm_in, use_cache=True, logits_to_keep=1)

    flops = count_flops(run)
    pipe.adapter.reset_state()
    return flops
