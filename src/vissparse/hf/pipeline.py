"""The HuggingFace pruning pipeline: process, embed, score, select, apply, generate."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vissparse.adapters import Embedded, get_adapter
from vissparse.adapters.vision_signals import VisionSignals
from vissparse.bench.timing import timed
from vissparse.config import PruningConfig
from vissparse.hf.inputs import Item, chat_text, normalize_batch, prompt_masks, sample_keys
from vissparse.llm.additions import added_to_layers
from vissparse.llm.pruner import LayerPruner, StageView, check_attention_readable
from vissparse.llm.schedule import average_tokens
from vissparse.pruning import (
    drop_tokens,
    gather_images,
    image_counts,
    image_token_mask,
    mask_tokens,
    pack_left,
    scatter_images,
    sequence_keep_mask,
)
from vissparse.query import query_from_embeddings
from vissparse.records import BatchAnswers
from vissparse.strategies.base import required_signals, select_tokens
from vissparse.strategies.context import ImageLayout, PruningContext, merge_tokens
from vissparse.strategies.registry import build_scorer, build_strategy


@dataclass
class PrunedBatch:
    """Exactly what the language model receives after pruning.

    Attributes:
        inputs_embeds: ``[B, L', D]`` (drop mode: shorter; mask mode: full length).
        attention_mask: ``[B, L']``.
        position_ids: original positions of the kept tokens, ``[B, L']`` or ``[3, B, L']``.
        image_keep: one bool mask per image over that image's tokens.
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

    def avg_image_tokens(self) -> list[float]:
        """Per row, the image tokens a language-model layer sees on average."""
        if self.image_tokens_per_layer is None:
            return [float(k) for k in self.n_kept]
        return [average_tokens(row) for row in self.image_tokens_per_layer]

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


class HFPipeline:
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
        self.scorer = build_scorer(config.scorer)
        self.strategy = build_strategy(config.strategy)
        self.signals = required_signals(self.scorer)
        self.schedule = config.layer_schedule() if config.stage == "llm" else None
        if config.mode == "mask" and self.adapter.recurrent_layers():
            raise ValueError(
                f"mode='mask' is not supported on {self.adapter.spec.name}: its linear-"
                "attention layers pass every token through a recurrent state, so a token "
                "masked out of attention still changes what the kept tokens see; mask mode "
                "is no reference there. Use mode='drop'"
            )
        if self.schedule is not None:
            if self.adapter.spec.token_types:
                raise ValueError(
                    f"stage='llm' is not supported on {self.adapter.spec.name}: its image "
                    "tokens attend to each other both ways and its sliding-window layers need "
                    "masks per layer type, which the in-LLM hooks do not build; use "
                    "stage='input'"
                )
            n_layers = len(self.adapter.decoder_layers())
            self.schedule.check_depth(n_layers)
            self.adapter.llm_attention_kind()  # refuses implementations it cannot mask
            if "text_attention" in self.signals:
                check_attention_readable(self.schedule, self.adapter.recurrent_layers(), n_layers)
        self._warm = False
        self._baseline_first = False

    # --- inputs ---------------------------------------------------------------------
    def _encode(self, image: Any, prompt: Any) -> tuple[Any, Tensor, list[Item], bool]:
        items, batched = normalize_batch(image, prompt, self.adapter.spec.placeholders)
        texts = [chat_text(self.processor, item) for item in items]
        images = [img for item in items for img in item.images]
        # LLaVA-OneVision's processor reads images nested per prompt (multi-image prompts)
        given: Any = [list(i.images) for i in items] if self.adapter.spec.nested_images else images
        try:
            inputs = self.processor(
                images=given, text=[text for text, _ in texts], padding=True,
                padding_side="left", return_tensors="pt",
            )  # fmt: skip
        except ValueError as err:  # the image processor's own checks (aspect ratio, size)
            sizes = [img.size for img in images]
            raise ValueError(
                f"`image` (sizes {sizes}) was refused by the {type(self.model).__name__} "
                f"image processor: {err}"
            ) from None
        prompt_mask = prompt_masks(
            self.processor, texts, inputs["input_ids"], inputs["attention_mask"],
            self.adapter.image_token_id,
        )  # fmt: skip
        inputs = inputs.to(self.model.device)
        for key, value in inputs.items():
            if torch.is_floating_point(value):
                inputs[key] = value.to(self.model.dtype)
        return inputs, prompt_mask.to(self.model.device), items, batched

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
        return self.select_and_apply(emb, prompt_mask, keys, layouts, vision)

    def unpruned(self, emb: Embedded, vision: VisionSignals | None = None) -> PrunedBatch:
        """The full batch as the language model receives it when it prunes inside."""
        image_keep = [torch.ones(p.numel(), dtype=torch.bool) for p in emb.image_positions]
        n_image, _ = image_counts(emb.attention_mask.shape[0], emb.image_sample, image_keep)
        return PrunedBatch(
            emb.inputs_embeds, emb.attention_mask, emb.position_ids, image_keep,
            emb.image_sample, n_image, list(n_image),
            kv_tokens=emb.attention_mask.sum(dim=1).float().tolist(),
            signal_ms=0.0 if vision is None else vision.ms, token_type_ids=self.token_types(emb),
            layer_additions=emb.layer_additions,
        )  # fmt: skip

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
        present = None
        if self.adapter.spec.image_newline:  # newlines are not scored but count as kept
            present = torch.zeros_like(valid)
            for i, positions in enumerate(emb.image_positions):
                present[i, : positions.numel()] = True
        ctx = self._context(tokens, query, valid, present, emb, emb.inputs_embeds, prompt_mask,
                            layouts, keys, vision)  # fmt: skip
        selection = select_tokens(self.scorer, self.strategy, ctx, self.config.keep_ratio)
        keep = selection.keep
        inputs_embeds = emb.inputs_embeds
        if selection.merge_into is not None:
            merged = merge_tokens(tokens, selection)
            inputs_embeds = scatter_images(
                inputs_embeds, emb.image_sample, emb.image_positions, merged
            )
        image_keep = [keep[i, : p.numel()] for i, p in enumerate(emb.image_positions)]
        rows, length = emb.attention_mask.shape
        keep_seq = sequence_keep_mask(
            (rows, length), emb.image_sample, emb.image_positions, image_keep,
            device=emb.inputs_embeds.device,
        )  # fmt: skip
        types = self.token_types(emb)
        if self.config.mode == "drop":
            embeds, positions, mask = drop_tokens(
                inputs_embeds, emb.position_ids, emb.attention_mask, keep_seq
            )
            if types is not None:
                types = pack_left(types, emb.attention_mask, keep_seq)
            additions = [drop_tokens(a, emb.position_ids, emb.attention_mask, keep_seq)[0]
                         for a in emb.layer_additions]  # fmt: skip
        else:
            embeds, positions = inputs_embeds, emb.position_ids
            mask = mask_tokens(emb.attention_mask, keep_seq)
            additions = emb.layer_additions
        n_image, n_kept = image_counts(rows, emb.image_sample, image_keep)
        cached = mask if self.config.mode == "drop" else emb.attention_mask
        return PrunedBatch(
            embeds, mask, positions, [k.cpu() for k in image_keep], emb.image_sample, n_image,
            n_kept, kv_tokens=cached.sum(dim=1).tolist(),
            signal_ms=0.0 if vision is None else vision.ms, token_type_ids=types,
            layer_additions=additions,
        )  # fmt: skip

    def token_types(self, emb: Embedded) -> Tensor | None:
        """``[B, L]`` long, 1 on image tokens, for families that read ``token_type_ids``."""
        if not self.adapter.spec.token_types:
            return None
        shape = (emb.attention_mask.shape[0], emb.attention_mask.shape[1])
        return image_token_mask(shape, emb.image_sample, emb.image_positions,
                                emb.attention_mask.device).long()  # fmt: skip

    def _context(
        self, tokens: Tensor, query: Tensor, valid: Tensor, present: Tensor | None,
        emb: Embedded, hidden: Tensor, prompt_mask: Tensor,
        layouts: list[ImageLayout] | None, keys: list[bytes] | None,
        vision: VisionSignals | None, text_attention: Tensor | None = None,
    ) -> PruningContext:  # fmt: skip
        """The :class:`PruningContext` of one batch of images, with the signals asked for.

        ``query`` and ``hidden`` / ``prompt_mask`` are per prompt row (``[B, ...]``);
        the context has one row per image.
        """
        words = "prompt_embeddings" in self.signals
        return PruningContext(
            tokens, query[emb.image_sample], valid, present,
            prompt_embeddings=hidden[emb.image_sample] if words else None,
            prompt_mask=prompt_mask[emb.image_sample] if words else None,
            layouts=layouts, sample_keys=keys,
            vision_attention=_pad_rows(None if vision is None else vision.attention, valid),
            vision_keys=_pad_rows(None if vision is None else vision.keys, valid),
            vision_features=_pad_rows(None if vision is None else vision.features, valid),
            text_attention=text_attention,
        )  # fmt: skip

    # --- pruning inside the language model --------------------------------------------
    def llm_pruner(
        self, emb: Embedded, prompt_mask: Tensor, keys: list[bytes] | None = None,
        layouts: list[ImageLayout] | None = None, vision: VisionSignals | None = None,
    ) -> LayerPruner:  # fmt: skip
        """The hooks that prune ``emb``'s images inside the language model (``stage="llm"``).

        Install them around the model's call with ``with pruner.installed(): ...``; then
        :meth:`llm_result` reads what they did.
        """
        if self.schedule is None:
            raise ValueError("llm_pruner needs stage='llm'")
        rows = getattr(self.scorer, "attention_rows", None)
        return LayerPruner(
            layers=self.adapter.decoder_layers(), schedule=self.schedule,
            select=lambda view: self._select_stage(emb, keys, layouts, vision, view),
            attention_mask=emb.attention_mask, prompt_mask=prompt_mask, mode=self.config.mode,
            rows=rows if "text_attention" in self.signals else None,
            eager=self.adapter.llm_attention_kind() == "eager",
            recurrent=self.adapter.recurrent_layers(),
        )  # fmt: skip

    def _select_stage(
        self, emb: Embedded, keys: list[bytes] | None, layouts: list[ImageLayout] | None,
        vision: VisionSignals | None, view: StageView,
    ) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        """One stage's choice among the image tokens still alive, from layer-K states."""
        hidden = view.hidden
        pairs = zip(emb.image_sample, emb.image_positions, strict=True)
        columns = [view.position[row, pos.to(hidden.device)] for row, pos in pairs]
        n_max = max((c.numel() for c in columns), default=0)
        n_img = len(columns)
        tokens = hidden.new_zeros(n_img, n_max, hidden.shape[-1])
        valid = torch.zeros(n_img, n_max, dtype=torch.bool, device=hidden.device)
        alive = torch.zeros_like(valid)
        attention = (
            None if view.attention is None else torch.zeros(n_img, n_max, device=hidden.device)
        )
        for i, (row, cols, ok) in enumerate(zip(emb.image_sample, columns, emb.scorable,
                                                strict=True)):  # fmt: skip
            here = cols >= 0
            n = cols.numel()
            alive[i, :n] = here
            valid[i, :n] = here & ok.to(hidden.device)
            tokens[i, :n][here] = hidden[row, cols[here]]
            if attention is not None and view.attention is not None:
                attention[i, :n][here] = view.attention[row, cols[here]].float()
        present = alive if self.adapter.spec.image_newline else None
        query = query_from_embeddings(hidden, view.prompt_mask)
        ctx = self._context(tokens, query, valid, present, emb, hidden, view.prompt_mask,
                            layouts, keys, vision, attention)  # fmt: skip
        selection = select_tokens(self.scorer, self.strategy, ctx, view.keep_ratio)
        keep = selection.keep & alive
        merged = None
        if selection.merge_into is not None:
            values = merge_tokens(tokens, selection)
            merged = hidden.clone()
            for i, (row, cols) in enumerate(zip(emb.image_sample, columns, strict=True)):
                kept = keep[i, : cols.numel()]
                merged[row, cols[kept]] = values[i, : cols.numel()][kept].to(merged.dtype)
        image_keep = [keep[i, : c.numel()] for i, c in enumerate(columns)]
        keep_seq = sequence_keep_mask(
            (emb.attention_mask.shape[0], emb.attention_mask.shape[1]), emb.image_sample,
            emb.image_positions, image_keep,
            device=hidden.device,
        )  # fmt: skip
        return keep_seq & emb.attention_mask.bool(), merged

    def llm_result(self, pruner: LayerPruner, emb: Embedded,
                   vision: VisionSignals | None = None) -> PrunedBatch:  # fmt: skip
        """What the language model saw after ``pruner`` ran: keeps, counts, KV per layer."""
        if len(pruner.keep) != len(pruner.schedule.stages):
            raise RuntimeError(
                f"the language model ran {len(pruner.keep)} of {len(pruner.schedule.stages)} "
                "pruning stages; was the prefill run inside `pruner.installed()`?"
            )
        final = pruner.keep[-1]
        pairs = zip(emb.image_sample, emb.image_positions, strict=True)
        image_keep = [final[row, pos.to(final.device)].cpu() for row, pos in pairs]
        rows = emb.attention_mask.shape[0]
        is_image = image_token_mask((rows, emb.attention_mask.shape[1]), emb.image_sample,
                                    emb.image_positions, final.device)  # fmt: skip
        real = emb.attention_mask.bool()
        stages = dict(zip(pruner.schedule.layers, pruner.keep, strict=True))
        per_layer: list[list[int]] = [[] for _ in range(rows)]
        kv: list[list[int]] = [[] for _ in range(rows)]
        image, seen = (is_image & real).sum(dim=1).tolist(), real.sum(dim=1).tolist()
        for layer in range(len(self.adapter.decoder_layers())):
            if layer in stages:
                image = (stages[layer] & is_image).sum(dim=1).tolist()
                if self.config.mode == "drop":
                    seen = stages[layer].sum(dim=1).tolist()
            for row in range(rows):
                per_layer[row].append(int(image[row]))
                kv[row].append(int(seen[row]))
        n_image, n_kept = image_counts(rows, emb.image_sample, image_keep)
        return PrunedBatch(
            emb.inputs_embeds, emb.attention_mask, emb.position_ids, image_keep,
            emb.image_sample, n_image, n_kept,
            kv_tokens=[average_tokens(row) for row in kv],
            signal_ms=0.0 if vision is None else vision.ms,
            image_tokens_per_layer=per_layer, llm_ms=pruner.ms,
            layer_additions=emb.layer_additions,
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

    def _generate_pruned(
        self, inputs: Any, prompt_mask: Tensor, keys: list[bytes] | None = None, **kwargs: Any
    ) -> Any:
        if self.schedule is not None:
            return self._generate_llm(inputs, prompt_mask, keys, **kwargs)
        pruned = self.prune(inputs, prompt_mask, keys)
        # Lengths count from the UNPRUNED prompt, as for the baseline: generate() only
        # sees the shorter embeddings, so turn them into counts of new tokens.
        prompt_length = int(inputs["input_ids"].shape[1])
        for total, new in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens")):
            if total in kwargs:
                value = kwargs.pop(total)
                kwargs.setdefault(new, max(0, value - prompt_length))
        with torch.inference_mode(), self.feeding(pruned):
            out = self.model.generate(**pruned.model_inputs(), **kwargs)
        self.adapter.reset_state()
        return pruned, _sequences(out)

    def _generate_llm(
        self, inputs: Any, prompt_mask: Tensor, keys: list[bytes] | None = None, **kwargs: Any
    ) -> Any:
        """Generate on the full prompt with the layer hooks pruning inside the model."""
        check_llm_generate_kwargs(kwargs)
        self.adapter.reset_state()
        emb, vision = self.embed(inputs)
        pruner = self.llm_pruner(emb, prompt_mask, keys, self.layouts(inputs, emb), vision)
        full = self.unpruned(emb)
        with torch.inference_mode(), self.feeding(full, pruner):
            out = self.model.generate(**full.model_inputs(), **kwargs)
        self.adapter.reset_state()
        return self.llm_result(pruner, emb, vision), _sequences(out)

    def _generate_baseline(self, inputs: Any, **kwargs: Any) -> Tensor:
        self.adapter.reset_state()
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        self.adapter.reset_state()
        return _sequences(out)[:, inputs["input_ids"].shape[1] :]

    def run(self, image: Any, prompt: str, prune: bool = True, **kwargs: Any) -> CallOutput:
        """Answer one prompt, pruned or (``prune=False``) with the unmodified model."""
        check_generate_kwargs(kwargs)
        inputs, prompt_mask, items, _ = self._encode(image, prompt)
        n_image = int((inputs["input_ids"] == self.adapter.image_token_id).sum())
        if prune:
            pruned, sequences = self._generate_pruned(
                inputs, prompt_mask, self._keys(items), **kwargs
            )
            n_kept, seen = sum(pruned.n_kept), sum(pruned.avg_image_tokens())
        else:
            sequences, n_kept = self._generate_baseline(inputs, **kwargs), n_image
            seen = float(n_image)
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
        check_generate_kwargs(generate_kwargs)
        inputs, prompt_mask, items, batched = self._encode(image, prompt)
        max_length = generate_kwargs.get("max_length")
        if max_length is not None and max_length <= inputs["input_ids"].shape[1]:
            raise ValueError(
                f"`max_length`={max_length} leaves no room to answer: the prompt with its "
                f"image tokens is {inputs['input_ids'].shape[1]} tokens; use `max_new_tokens`"
            )
        keys = self._keys(items)
        if measure_baseline and not self._warm:
            self._generate_pruned(inputs, prompt_mask, keys, **generate_kwargs)
            self._generate_baseline(inputs, **generate_kwargs)
            self._warm = True
        base: Tensor | None = None
        base_ms = 0.0
        # with a baseline, the order alternates from call to call so drift hits both sides
        baseline_first = measure_baseline and self._baseline_first
        if baseline_first:
            base, base_ms = timed(lambda: self._generate_baseline(inputs, **generate_kwargs))
        (pruned, sequences), latency_ms = timed(
            lambda: self._generate_pruned(inputs, prompt_mask, keys, **generate_kwargs)
        )
        if measure_baseline:
            if not baseline_first:
                base, base_ms = timed(lambda: self._generate_baseline(inputs, **generate_kwargs))
            self._baseline_first = not self._baseline_first
        texts = self.processor.batch_decode(sequences, skip_special_tokens=True)
        if not return_details and not measure_baseline:
            return texts if batched else texts[0]
        return_details = True
        metrics: dict[str, Any] = {
            "latency_ms": latency_ms,
            "n_image_tokens": sum(pruned.n_image_tokens),
            "n_kept": sum(pruned.n_kept),
            # fair accounting: the image tokens a layer sees on average over the layers
            # (before the language model, that is the kept count in every layer)
            "avg_image_tokens": sum(pruned.avg_image_tokens()),
            "effective_keep_ratio": sum(pruned.avg_image_tokens())
            / max(1, sum(pruned.n_image_tokens)),
            "signal_ms": pruned.signal_ms,
            "kv_cache_tokens": pruned.kv_tokens,
        }
        if self.schedule is not None:
            metrics["llm_ms"] = pruned.llm_ms
            metrics["image_tokens_per_layer"] = pruned.image_tokens_per_layer
        if base is not None:
            metrics["baseline_latency_ms"] = base_ms
            metrics["speedup"] = base_ms / latency_ms
            base_texts = self.processor.batch_decode(base, skip_special_tokens=True)
            metrics["baseline_text"] = base_texts if batched else base_texts[0]
        per_row: list[list[Tensor]] = [[] for _ in items]
        for row, kept in zip(pruned.image_sample, pruned.image_keep, strict=True):
            per_row[row].append(kept)
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
        return BatchAnswers(
            texts=details.text,
            baseline_texts=metrics.get("baseline_text"),
            keep_masks=details.keep_mask,
            n_image_tokens=[int(sum(m.numel() for m in row)) for row in details.keep_mask],
            n_kept=[int(sum(m.sum() for m in row)) for row in details.keep_mask],
            latency_ms=metrics["latency_ms"],
            baseline_latency_ms=metrics.get("baseline_latency_ms"),
        )


def _pad_rows(rows: list[Tensor] | None, like: Tensor) -> Tensor | None:
    """Per-image ``[n_i, ...]`` tensors stacked to ``[n_images, N, ...]``, zero-padded."""
    if rows is None:
        return None
    out = torch.zeros(*like.shape, *rows[0].shape[1:], dtype=torch.float32,
                      device=like.device) if rows else torch.zeros(0)  # fmt: skip
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row.to(out.device, torch.float32)
    return out


def _sequences(out: Any) -> Tensor:
    return out.sequences if hasattr(out, "sequences") else out


# Inputs VisSparse builds itself; passing them to generate() would bypass the pruning.
RESERVED_GENERATE_KWARGS = (
    "input_ids", "inputs_embeds", "attention_mask", "position_ids", "pixel_values",
    "image_grid_thw", "image_sizes", "mm_token_type_ids",
)  # fmt: skip


def check_llm_generate_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse generate() options that ``stage="llm"`` pruning cannot follow, naming them.

    Example:
        >>> check_llm_generate_kwargs({"num_beams": 2})
        Traceback (most recent call last):
        ...
        ValueError: `num_beams` must be 1 with stage='llm' (the pruned layers' cache is per prompt)
    """
    if kwargs.get("num_beams", 1) != 1:
        raise ValueError(
            "`num_beams` must be 1 with stage='llm' (the pruned layers' cache is per prompt)"
        )
    if kwargs.get("use_cache", True) is not True:
        raise ValueError(
            "`use_cache` must be True with stage='llm': decoding reads the pruned cache"
        )


def check_generate_kwargs(kwargs: dict[str, Any]) -> None:
    """Reject generate() arguments VisSparse cannot honour, naming them.

    Example:
        >>> check_generate_kwargs({"max_new_tokens": 4})
        >>> check_generate_kwargs({"attention_mask": None})
        Traceback (most recent call last):
        ...
        TypeError: `attention_mask` is built by VisSparse from `image` and `prompt`; do not pass it to generate
    """  # noqa: E501
    for key in RESERVED_GENERATE_KWARGS:
        if key in kwargs:
            raise TypeError(
                f"`{key}` is built by VisSparse from `image` and `prompt`; do not pass it to "
                "generate"
            )
    if kwargs.get("num_return_sequences", 1) != 1:
        raise ValueError(
            "`num_return_sequences` must be 1: VisSparse returns one answer per prompt"
        )
    for key in ("max_new_tokens", "min_new_tokens", "max_length"):
        value = kwargs.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < (0 if key == "min_new_tokens" else 1)):  # fmt: skip
            raise ValueError(f"`{key}` must be an int >= 1 (0 allowed for min), got {value!r}")
