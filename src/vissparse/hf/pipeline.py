"""The HuggingFace pruning pipeline: process, embed, score, select, apply, generate.

The scoring, selection and merging are the selection core's
(:class:`vissparse.selection.SelectionCore`), shared with the vLLM plugin.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor

from vissparse.adapters import Embedded, get_adapter
from vissparse.adapters.vision_signals import VisionSignals
from vissparse.bench.timing import timed
from vissparse.config import PruningConfig
from vissparse.content_words import content_mask_of
from vissparse.hf.apply_mode import apply_mode
from vissparse.hf.clip_space import check_vision_tower
from vissparse.hf.compiled import check_compilable, full_batch, generate_from
from vissparse.hf.downsample import downsampler_for
from vissparse.hf.encode import encode_items
from vissparse.hf.generate_checks import (
    RESERVED_GENERATE_KWARGS,
    check_generate_kwargs,
    check_llm_generate_kwargs,
)
from vissparse.hf.generation_options import as_new_tokens, lengths_from_call
from vissparse.hf.host_facts import assert_counts, host_counts, reported_counts, word_columns
from vissparse.hf.inputs import Item, normalize_batch, sample_keys
from vissparse.hf.llm_stage import LLMStage
from vissparse.hf.results import (
    CallOutput,
    GenerationDetails,
    PrunedBatch,
    call_metrics,
    generated_ids,
)
from vissparse.host_sync import to_device
from vissparse.llm.additions import added_to_layers
from vissparse.llm.pruner import LayerPruner
from vissparse.prompt_texts import prompt_texts_of
from vissparse.pruning import (
    gather_images,
    image_slots,
    kept_ids,
    scatter_images,
    sequence_keep_mask,
)
from vissparse.query import pack_words, query_from_embeddings
from vissparse.records import BatchAnswers
from vissparse.selection import SelectionCore
from vissparse.strategies.context import ImageLayout, PruningContext

__all__ = [
    "RESERVED_GENERATE_KWARGS", "CallOutput", "GenerationDetails", "HFPipeline", "PrunedBatch",
    "check_generate_kwargs", "check_llm_generate_kwargs",
]  # fmt: skip


class HFPipeline(LLMStage):
    """Prunes image tokens of a loaded HF model; see :class:`vissparse.VisSparse`.

    Example:
        >>> from vissparse.testing import random_image, tiny_model
        >>> model, processor = tiny_model("llava")
        >>> pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
        >>> out = pipe.generate(random_image(), "What is it?", max_new_tokens=2,
        ...                     return_details=True)
        >>> out.metrics["n_image_tokens"], out.metrics["n_kept"]
        (16, 4)
    """

    def __init__(self, model: Any, processor: Any, config: PruningConfig) -> None:
        self.model = model
        self.processor = processor
        self.config = config
        self.adapter = get_adapter(model)
        self.core = SelectionCore(config.scorer, config.strategy)
        self.schedule = config.layer_schedule() if config.stage == "llm" else None
        check_compilable(self.adapter, config.compile)
        # scorer="downsample": the images are resized before the processor instead
        self.downsampler = downsampler_for(self.core.scorer, self.adapter.spec, processor, config)
        check_vision_tower(self.core.scorer, model)  # trim: CLIP towers only
        if config.mode == "mask" and self.adapter.recurrent_layers():
            raise ValueError(
                f"mode='mask' is not supported on {self.adapter.spec.name}: its linear-"
                "attention layers pass every token through a recurrent state, so a token "
                "masked out of attention still changes what the kept tokens see; mask mode "
                "is no reference there. Use mode='drop'"
            )
        if config.positions == "compact" and self.adapter.spec.positions != "linear":
            raise ValueError(
                f"positions='compact' is for 1-D RoPE families; {self.adapter.spec.name} "
                f"numbers its positions {self.adapter.spec.positions!r}: use positions='keep'"
            )
        if self.schedule is not None:
            self._check_stage()
        self._warm = False
        self._baseline_first = False

    # --- inputs ---------------------------------------------------------------------
    def _encode(
        self, image: Any, prompt: Any, downsample: bool = False
    ) -> tuple[Any, Tensor, list[Item], bool]:
        """Processed inputs (``downsample``: of the downsampled images), and the items."""
        items, batched = normalize_batch(image, prompt, self.adapter.spec.placeholders)
        down = self.downsampler if downsample else None
        inputs, mask = encode_items(self.model, self.processor, self.adapter, items, down)
        return inputs, mask, items, batched

    def prepare_inputs(self, image: Any, prompt: Any) -> Any:
        """The processor output exactly as the model is fed with it (unpruned)."""
        return self._encode(image, prompt)[0]

    # --- pruning --------------------------------------------------------------------
    @torch.inference_mode()
    def prune(
        self, inputs: Any, prompt_mask: Tensor, keys: list[bytes] | None = None
    ) -> PrunedBatch:
        """Embed, score each image against its prompt's query, select, apply the mode.

        ``keys`` (one per image, :func:`sample_keys`) reach scorers that use them. With
        ``stage="llm"`` the selection happens inside the language model, so the prefill
        runs with the hooks and the result holds the final keep masks and per-layer counts
        (its ``model_inputs()`` are the full sequence, which the model is fed).
        """
        self.adapter.reset_state()
        emb, vision = self.embed(inputs)
        layouts = self.layouts(inputs, emb)
        if self.schedule is not None:  # the keep masks exist once the prefill has run
            pruner = self.llm_pruner(emb, prompt_mask, keys, layouts, vision)
            full = self.unpruned(emb)
            with self.feeding(full, pruner):
                self.model(**full.model_inputs(), use_cache=True, logits_to_keep=1)
            self.adapter.reset_state()
            return self.llm_result(pruner, emb, vision)
        batch = self.select_and_apply(emb, prompt_mask, keys, layouts, vision)
        ids = inputs["input_ids"]  # as fed: drop mode leaves the pruned tokens out
        if self.config.mode == "drop":
            pad = getattr(getattr(self.processor, "tokenizer", None), "pad_token_id", None)
            ids = kept_ids(ids, emb.attention_mask, emb.image_sample, emb.image_positions,
                           batch.image_keep, pad=pad or 0,
                           length=batch.inputs_embeds.shape[1])  # fmt: skip
        batch.input_ids = ids
        return batch

    def embed(self, inputs: Any, prune: bool = True) -> tuple[Embedded, VisionSignals | None]:
        """The vision encoder's pass, with the attention signals the method asked for."""
        attention = bool(self.signals & {"vision_attention", "vision_keys"})
        features = "vision_features" in self.signals
        if prune and (attention or features):
            layer = getattr(self.scorer, "vision_layer", None)
            layer = self.adapter.feature_layer() if layer is None else int(layer)
            return self.adapter.embed_with_signals(inputs, layer, attention, features)
        return self.adapter.embed(inputs), None

    def layouts(self, inputs: Any, emb: Embedded) -> list[ImageLayout] | None:
        """Each image's token layout, when the scorer asks for it or newlines need it."""
        if "layouts" in self.signals or self.adapter.spec.image_newline:
            return self.adapter.layouts(inputs, emb)
        return None

    @torch.inference_mode()
    def select_and_apply(
        self, emb: Embedded, prompt_mask: Tensor, keys: list[bytes] | None = None,
        layouts: list[ImageLayout] | None = None, vision: VisionSignals | None = None,
    ) -> PrunedBatch:  # fmt: skip
        """The pruning proper, after the vision encoder: query, score, select, apply.

        The budget counts every image token, LLaVA-NeXT's newlines included: a newline
        is kept with its row, within ``keep_ratio``. A merging method's kept tokens are
        replaced by their merged values before the mode is applied. This is the overhead
        VisSparse adds to a call; benchmarks time it on its own.
        """
        query = query_from_embeddings(emb.inputs_embeds, prompt_mask)
        tokens, valid = gather_images(
            emb.inputs_embeds, emb.image_sample, emb.image_positions, emb.scorable
        )
        present = None  # newlines are not scored but count as kept
        if self.adapter.spec.image_newline:
            present = image_slots(emb.image_positions, valid.shape[1], valid.device)
        ctx = self._context(tokens, query, valid, present, emb, emb.inputs_embeds, prompt_mask,
                            layouts, keys, vision, content_mask=content_mask_of(prompt_mask),
                            texts=prompt_texts_of(prompt_mask))  # fmt: skip
        ratio = 1.0 if self.downsampler is not None else self.config.keep_ratio  # all kept
        choice = self.core.choose(ctx, ratio)
        keep = choice.keep
        inputs_embeds = emb.inputs_embeds
        if choice.merged is not None:
            inputs_embeds = scatter_images(
                inputs_embeds, emb.image_sample, emb.image_positions, choice.merged
            )
        image_keep = [keep[i, : p.numel()] for i, p in enumerate(emb.image_positions)]
        rows, length = emb.attention_mask.shape
        keep_seq = sequence_keep_mask(
            (rows, length), emb.image_sample, emb.image_positions, image_keep,
            device=emb.inputs_embeds.device,
        )  # fmt: skip
        counts = host_counts(self.core, ratio, emb)  # None: read back
        if counts is not None:
            assert_counts(counts, emb.attention_mask, keep_seq)
        embeds, mask, positions, types, additions = apply_mode(
            self.config, emb, inputs_embeds, keep_seq, self.token_types(emb),
            None if counts is None else counts.length,
        )  # fmt: skip
        n_image, n_kept, kv = reported_counts(counts, emb, image_keep, mask,
                                              self.config.mode == "drop")  # fmt: skip
        return PrunedBatch(
            embeds, mask, positions, image_keep, emb.image_sample, n_image, n_kept, kv,
            signal_ms=0.0 if vision is None else vision.ms, token_type_ids=types,
            layer_additions=additions,
        )  # fmt: skip

    def _context(
        self, tokens: Tensor, query: Tensor, valid: Tensor, present: Tensor | None,
        emb: Embedded, hidden: Tensor, prompt_mask: Tensor,
        layouts: list[ImageLayout] | None, keys: list[bytes] | None,
        vision: VisionSignals | None, text_attention: Tensor | None = None,
        content_mask: Tensor | None = None, texts: Sequence[str] | None = None,
    ) -> PruningContext:  # fmt: skip
        """The selection core's context of one batch of images (rows per prompt given).

        ``query`` and ``hidden`` / ``prompt_mask`` / ``content_mask`` / ``texts`` are per
        prompt row (``[B, ...]``); the context has one row per image.
        """
        rows = to_device(torch.tensor(emb.image_sample, dtype=torch.long), query.device)
        words = "prompt_embeddings" in self.signals
        content = content_mask if words else None
        if words:  # the user's words only: a word scorer compares each with every token
            hidden, prompt_mask, content = pack_words(hidden, prompt_mask, word_columns(emb),
                                                      content)  # fmt: skip
        return self.core.context(
            tokens, query.index_select(0, rows), valid, present,
            prompt_embeddings=hidden.index_select(0, rows) if words else None,
            prompt_mask=prompt_mask.index_select(0, rows) if words else None, layouts=layouts,
            content_mask=None if content is None else content.index_select(0, rows),
            keys=keys, vision=vision, text_attention=text_attention,
            texts=None if texts is None else [texts[i] for i in emb.image_sample],
        )  # fmt: skip

    # --- generation -----------------------------------------------------------------
    @contextmanager
    def feeding(self, batch: PrunedBatch, pruner: LayerPruner | None = None) -> Iterator[None]:
        """While the block runs, the model can be called on ``batch.model_inputs()``.

        It lets ``generate`` take the embeddings (Gemma 3), adds the batch's layer
        additions (Qwen3-VL's DeepStack) and, with ``stage="llm"``, installs ``pruner``'s
        hooks; the additions then follow the tokens the pruner drops.

        Example:
            >>> from vissparse.testing import random_image, tiny_model
            >>> model, processor = tiny_model("qwen3_vl")
            >>> pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
            >>> inputs, prompt_mask, _, _ = pipe._encode(random_image(), "What is it?")
            >>> batch = pipe.prune(inputs, prompt_mask)
            >>> with pipe.feeding(batch):
            ...     logits = model(**batch.model_inputs()).logits
            >>> logits.shape[1] == batch.inputs_embeds.shape[1]
            True
        """
        with ExitStack() as stack:
            stack.enter_context(self.adapter.generating())
            if pruner is not None:
                stack.enter_context(pruner.installed())
            if batch.layer_additions:
                columns = pruner.columns if pruner is not None else (lambda: None)
                stack.enter_context(added_to_layers(
                    self.adapter.decoder_layers(), batch.layer_additions, columns
                ))  # fmt: skip
            yield

    def _keys(self, items: list[Item]) -> list[bytes] | None:
        """Per-image sample keys, computed only for a scorer that uses them."""
        return sample_keys(items) if "sample_keys" in self.signals else None

    def _call(
        self, image: Any, prompt: Any, kwargs: dict[str, Any], downsample: bool = False
    ) -> tuple[Any, ...]:
        """Encoded inputs; ``kwargs`` with each length limit as new tokens (both calls).

        From keyword, ``generation_config=`` or the model's, counted after the UNPRUNED prompt
        (``downsample``: of the full-size images, while the inputs are the downsampled ones).
        """
        check_generate_kwargs(kwargs, self.model, self.config.compile)
        down = self.downsampler if downsample else None
        inputs, prompt_mask, items, batched = self._encode(image, prompt, down is not None)
        length = int(inputs["input_ids"].shape[1])
        if down is not None:
            length = down.unpruned_length(inputs, items, self.adapter.image_token_id)
        kwargs = as_new_tokens(self.model, kwargs, length)
        return inputs, prompt_mask, items, batched, kwargs

    def _generate_pruned(
        self, inputs: Any, prompt_mask: Tensor, keys: list[bytes] | None = None, **kwargs: Any
    ) -> Any:
        """The pruned call; ``kwargs`` as :meth:`_call` gives them."""
        if self.schedule is not None:
            return self._generate_llm(inputs, prompt_mask, keys, **kwargs)
        pruned = self.prune(inputs, prompt_mask, keys)
        return pruned, generate_from(self, pruned, kwargs)

    def _generate_baseline(self, inputs: Any, **kwargs: Any) -> Tensor:
        """The unpruned call (compiled: from embeddings as the pruned one); see :meth:`_call`."""
        if self.config.compile:
            return generate_from(self, full_batch(self, inputs), kwargs)
        self.adapter.reset_state()
        with torch.inference_mode(), lengths_from_call(self.model):
            out = self.model.generate(**inputs, **kwargs)
        self.adapter.reset_state()
        return generated_ids(out, inputs["input_ids"].shape[1])

    def run(self, image: Any, prompt: str, prune: bool = True, **kwargs: Any) -> CallOutput:
        """Answer one prompt, pruned or (``prune=False``) with the unmodified model."""
        down = self.downsampler if prune else None
        inputs, prompt_mask, items, _, kwargs = self._call(image, prompt, kwargs, bool(down))
        n_image = int((inputs["input_ids"] == self.adapter.image_token_id).sum())
        if down is not None:  # the full-size images' tokens: the downsampled call keeps all
            n_image = sum(down.full_tokens(items))
        if prune:
            pruned, sequences = self._generate_pruned(
                inputs, prompt_mask, self._keys(items), **kwargs
            )
            n_kept, seen = sum(pruned.n_kept), sum(pruned.avg_image_tokens())
        else:
            sequences, n_kept, seen = self._generate_baseline(inputs, **kwargs), n_image, n_image
        text = self.processor.batch_decode(sequences, skip_special_tokens=True)[0]
        return CallOutput(text=text, n_kept=n_kept, n_image_tokens=n_image, avg_image_tokens=seen)

    def generate(
        self,
        image: Any,
        prompt: Any,
        return_details: bool = False,
        measure_baseline: bool = False,
        **generate_kwargs: Any,
    ) -> Any:
        """Answer ``prompt`` about ``image`` with pruned image tokens.

        ``measure_baseline=True`` also runs the unpruned model on the same inputs (before
        or after the pruned call, alternating from call to call; the first such call warms
        both up untimed first) and adds
        ``baseline_latency_ms``, ``speedup`` and ``baseline_text`` to the metrics; it
        implies ``return_details=True``.
        """
        for name, flag in (("return_details", return_details),
                           ("measure_baseline", measure_baseline)):  # fmt: skip
            if not isinstance(flag, bool):
                raise TypeError(f"`{name}` must be a bool, got {flag!r}")
        down = self.downsampler
        inputs, prompt_mask, items, batched, generate_kwargs = self._call(
            image, prompt, generate_kwargs, down is not None
        )
        keys = self._keys(items)
        full = inputs  # the baseline's: downsampling, the full-size images'
        if down is not None and measure_baseline:
            full = self._encode(image, prompt)[0]
        if measure_baseline and not self._warm:
            self._generate_pruned(inputs, prompt_mask, keys, **generate_kwargs)
            self._generate_baseline(full, **generate_kwargs)
            self._warm = True
        base: Tensor | None = None
        base_ms = 0.0
        # with a baseline, the order alternates from call to call so drift hits both sides
        baseline_first = measure_baseline and self._baseline_first
        if baseline_first:
            base, base_ms = timed(lambda: self._generate_baseline(full, **generate_kwargs))
        (pruned, sequences), latency_ms = timed(
            lambda: self._generate_pruned(inputs, prompt_mask, keys, **generate_kwargs)
        )
        if measure_baseline:
            if not baseline_first:
                base, base_ms = timed(lambda: self._generate_baseline(full, **generate_kwargs))
            self._baseline_first = not self._baseline_first
        texts = self.processor.batch_decode(sequences, skip_special_tokens=True)
        if not return_details and not measure_baseline:
            return texts if batched else texts[0]
        return_details = True
        if down is not None:  # n_image_tokens: the full-size images' (kept: all emitted)
            pruned.n_image_tokens = down.full_tokens(items)
        metrics = call_metrics(pruned, latency_ms)
        if down is not None:
            metrics["downsampled_from"] = list(pruned.n_image_tokens)  # per row
        if base is not None:
            metrics["baseline_latency_ms"] = base_ms
            metrics["speedup"] = base_ms / latency_ms
            base_texts = self.processor.batch_decode(base, skip_special_tokens=True)
            metrics["baseline_text"] = base_texts if batched else base_texts[0]
        per_row = pruned.keep_masks_per_row(len(items))
        details = GenerationDetails(
            text=texts if batched else texts[0],
            sequences=sequences,
            keep_mask=per_row if batched else per_row[0],
            metrics=metrics,
        )
        return details if return_details else details.text

    def answer_batch(
        self, images: list[Any], prompts: list[str], measure_baseline: bool = True,
        **generate_kwargs: Any,
    ) -> BatchAnswers:  # fmt: skip
        """Answer a batch in one pruned ``generate`` call (and one unpruned, if measured)."""
        details = self.generate(
            list(images), list(prompts), return_details=True,
            measure_baseline=measure_baseline, **generate_kwargs,
        )  # fmt: skip
        metrics = details.metrics
        full = metrics.get("downsampled_from")  # per row; else the keep masks' sizes
        return BatchAnswers(
            texts=details.text,
            baseline_texts=metrics.get("baseline_text"),
            keep_masks=details.keep_mask,
            n_image_tokens=full or [int(sum(m.numel() for m in row)) for row in details.keep_mask],
            n_kept=[int(sum(m.sum() for m in row)) for row in details.keep_mask],
            latency_ms=metrics["latency_ms"],
            baseline_latency_ms=metrics.get("baseline_latency_ms"),
        )
