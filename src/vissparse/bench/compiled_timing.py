"""Phase timing of one call on the compiled path (``bench --model-config --compile``).

The language model runs as ``VisSparse(compile=True)`` runs it (:mod:`vissparse.hf.compiled`):
the prompt (pruned or not) is left-padded to its bucket (:func:`pad_batch`,
:func:`bucket_length`) and ``model.generate`` decodes greedily with a static KV cache of
the bucket of (padded prompt + new tokens) through the ``torch.compile``d forward
(:func:`compiled_kwargs`: on CUDA ``mode="reduce-overhead"``, CUDA graphs).

How the phases are timed: the vision encoder and the pruning (selection and the ids fed
beside the embeddings) as in :func:`vissparse.bench.measure.timed_call`; then ``generate``
runs with a logits processor that takes a timestamp each time it is called, that is once
per forward, after its logits (synchronising CUDA first). The prefill is from the
``generate`` call to the first timestamp (padding, the static cache's allocation and
generate's own set-up included: what a compiled call costs); each decode step is the time
between two timestamps (the compiled forward and generate's per-step host work). The
end-of-sequence token is switched off so every call decodes ``new_tokens`` tokens, as the
eager path does.

The KV cache's bytes are those the padded prompt takes in the static cache (the cache
itself is allocated for the longest bucket of the run: transformers keeps the largest).
"""

from __future__ import annotations

import time
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList

from vissparse.bench.measure import CallTiming, _lm_inputs, _sync, start_call
from vissparse.hf.compiled import bucket_length, compiled_kwargs, pad_batch
from vissparse.hf.pipeline import HFPipeline
from vissparse.hf.results import generated_ids
from vissparse.pruning import kept_ids


class Timestamps(LogitsProcessor):
    """A logits processor that records ``time.perf_counter()`` at each call, scores unchanged.

    Example:
        >>> stamps = Timestamps(torch.device("cpu"))
        >>> scores = stamps(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 4))
        >>> len(stamps.times), scores.tolist()
        (1, [[1.0, 1.0, 1.0, 1.0]])
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        """Record the time (after the device's queued work) and return ``scores``."""
        _sync(self.device)
        self.times.append(time.perf_counter())
        return scores


def prompt_kv_bytes(cache: Any, length: int) -> int:
    """Bytes the first ``length`` columns of a static cache's keys and values take.

    Example:
        >>> from types import SimpleNamespace
        >>> layer = SimpleNamespace(keys=torch.zeros(1, 2, 8, 4), values=torch.zeros(1, 2, 8, 4))
        >>> prompt_kv_bytes(SimpleNamespace(layers=[layer]), 2)
        128
    """
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, Tensor) and tensor.dim() >= 2 and tensor.shape[-2] > 0:
                columns = min(length, int(tensor.shape[-2]))
                total += tensor.numel() * tensor.element_size() * columns // tensor.shape[-2]
    return total


def _ids(pipe: HFPipeline, inputs: Any, emb: Any, batch: Any, prune: bool) -> Tensor:
    """The ids ``generate`` is given beside the embeddings (as ``HFPipeline.prune`` sets them)."""
    ids = inputs["input_ids"]
    if prune and pipe.config.mode == "drop":
        pad = getattr(getattr(pipe.processor, "tokenizer", None), "pad_token_id", None)
        ids = kept_ids(ids, emb.attention_mask, emb.image_sample, emb.image_positions,
                       batch.image_keep, pad=pad or 0,
                       length=batch.inputs_embeds.shape[1])  # fmt: skip
    return ids


@torch.inference_mode()
def timed_compiled_call(
    pipe: HFPipeline, inputs: Any, prompt_mask: Tensor, prune: bool, new_tokens: int,
    backend: str | None = None,
) -> CallTiming:  # fmt: skip
    """One call on the compiled path, phase by phase (see the module's docstring).

    ``backend`` replaces ``torch.compile``'s backend (tests use ``"aot_eager"``: inductor
    costs seconds a graph on a CPU); ``None`` keeps the path's own.
    """
    model, device = pipe.model, pipe.model.device
    if pipe.schedule is not None:
        raise ValueError("`compile=True` cannot time stage='llm'; use the input stage")
    t0, t1, emb, vision = start_call(pipe, inputs, prune)
    batch, _ = _lm_inputs(pipe, inputs, emb, prompt_mask, prune, vision)
    batch.input_ids = _ids(pipe, inputs, emb, batch, prune)
    length = int(batch.inputs_embeds.shape[1])
    stamps = Timestamps(device)
    _sync(device)
    t2 = time.perf_counter()
    pad = getattr(getattr(pipe.processor, "tokenizer", None), "pad_token_id", None) or 0
    padded = pad_batch(batch, bucket_length(length), pad)
    options = {"max_new_tokens": new_tokens, "do_sample": False, "eos_token_id": None,
               "pad_token_id": pad}  # fmt: skip
    kwargs = compiled_kwargs(model, options, int(padded.inputs_embeds.shape[1]))
    if backend is not None:
        kwargs["compile_config"].backend = backend
    with pipe.feeding(padded):
        out = model.generate(**padded.generate_inputs(), **kwargs, return_dict_in_generate=True,
                             logits_processor=LogitsProcessorList([stamps]))  # fmt: skip
    _sync(device)
    times = stamps.times
    timing = CallTiming(vision_ms=(t1 - t0) * 1e3, overhead_ms=(t2 - t1) * 1e3,
                        prefill_ms=(times[0] - t2) * 1e3, ttft_ms=(times[0] - t0) * 1e3,
                        decode_ms=[(b - a) * 1e3 for a, b in pairwise(times)])  # fmt: skip
    timing.batch_tokens = generated_ids(out, padded.prompt_length()).tolist()
    timing.tokens = timing.batch_tokens[0]
    timing.kv_cache_bytes = prompt_kv_bytes(out.past_key_values, int(padded.inputs_embeds.shape[1]))
    timing.sequence_length = length
    timing.padded_length = int(padded.inputs_embeds.shape[1])
    n_layers = len(pipe.adapter.decoder_layers())
    timing.layer_lengths = [length] * n_layers
    timing.image_tokens_per_layer = [int(sum(int(k) for k in batch.n_kept))] * n_layers
    timing.signal_ms = 0.0 if vision is None else vision.ms
    if device.type == "cuda":
        timing.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    pipe.adapter.reset_state()
    return timing
