"""Pruning inside the language model (``stage="llm"``): the HF pipeline's layer hooks.

The stage's choice among the image tokens still alive at layer K goes through the same
:class:`~vissparse.selection.SelectionCore` as pruning before the language model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vissparse.adapters import Embedded
from vissparse.adapters.vision_signals import VisionSignals
from vissparse.config import PruningConfig
from vissparse.content_words import content_mask_of
from vissparse.hf.generate_checks import check_llm_generate_kwargs
from vissparse.hf.generation_options import lengths_from_call
from vissparse.hf.results import PrunedBatch, generated_ids
from vissparse.llm.pruner import LayerPruner, StageView, check_attention_readable
from vissparse.llm.schedule import LayerSchedule, average_tokens
from vissparse.prompt_texts import prompt_texts_of
from vissparse.pruning import image_counts, image_token_mask, sequence_keep_mask
from vissparse.query import query_from_embeddings
from vissparse.selection import SelectionCore
from vissparse.strategies.context import ImageLayout, PruningContext


class LLMStage:
    """The ``stage="llm"`` half of :class:`vissparse.hf.pipeline.HFPipeline`."""

    adapter: Any
    config: PruningConfig
    core: SelectionCore
    schedule: LayerSchedule | None

    @property
    def scorer(self) -> Any:
        """The method's scorer."""
        return self.core.scorer

    @property
    def strategy(self) -> Any:
        """The method's mask strategy."""
        return self.core.strategy

    @property
    def signals(self) -> frozenset[str]:
        """The signals the method reads."""
        return self.core.signals

    model: Any

    def _check_stage(self) -> None:
        """Refuse a family or attention implementation the layer hooks cannot prune."""
        assert self.schedule is not None
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

    # the HF pipeline's own (vissparse.hf.pipeline.HFPipeline)
    def _context(self, *args: Any, **kwargs: Any) -> PruningContext:
        raise NotImplementedError

    def embed(self, inputs: Any, prune: bool = True) -> Any:
        """The vision encoder's pass (the pipeline's)."""
        raise NotImplementedError

    def layouts(self, inputs: Any, emb: Embedded) -> Any:
        """Each image's token layout (the pipeline's)."""
        raise NotImplementedError

    def feeding(self, batch: PrunedBatch, pruner: LayerPruner | None = None) -> Any:
        """A context in which the model is fed ``batch`` (the pipeline's)."""
        raise NotImplementedError

    def token_types(self, emb: Embedded) -> Tensor | None:
        """``[B, L]`` long, 1 on image tokens, for families that read ``token_type_ids``."""
        if not self.adapter.spec.token_types:
            return None
        shape = (emb.attention_mask.shape[0], emb.attention_mask.shape[1])
        return image_token_mask(shape, emb.image_sample, emb.image_positions,
                                emb.attention_mask.device).long()  # fmt: skip

    def llm_pruner(
        self, emb: Embedded, prompt_mask: Tensor, keys: list[bytes] | None = None,
        layouts: list[ImageLayout] | None = None, vision: VisionSignals | None = None,
    ) -> LayerPruner:  # fmt: skip
        """The hooks that prune ``emb``'s images inside the language model (``stage="llm"``).

        Install them around the model's call with ``with pruner.installed(): ...``; then
        :meth:`llm_result` reads what they did. The content words that
        :meth:`~vissparse.hf.pipeline.HFPipeline.prepare_inputs` remembered on
        ``prompt_mask`` follow each stage's columns as an explicit mask.
        """
        if self.schedule is None:
            raise ValueError("llm_pruner needs stage='llm'")
        rows = getattr(self.scorer, "attention_rows", None)
        texts = prompt_texts_of(prompt_mask)  # the same at every stage
        return LayerPruner(
            layers=self.adapter.decoder_layers(), schedule=self.schedule,
            select=lambda view: self._select_stage(emb, keys, layouts, vision, view, texts),
            attention_mask=emb.attention_mask, prompt_mask=prompt_mask,
            content_mask=content_mask_of(prompt_mask), mode=self.config.mode,
            rows=rows if "text_attention" in self.signals else None,
            eager=self.adapter.llm_attention_kind() == "eager",
            recurrent=self.adapter.recurrent_layers(),
        )  # fmt: skip

    def _select_stage(
        self, emb: Embedded, keys: list[bytes] | None, layouts: list[ImageLayout] | None,
        vision: VisionSignals | None, view: StageView, texts: Sequence[str] | None = None,
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
                            layouts, keys, vision, attention,
                            content_mask=view.content_mask, texts=texts)  # fmt: skip
        choice = self.core.choose(ctx, view.keep_ratio)
        keep = choice.keep & alive
        merged = None
        if choice.merged is not None:
            values = choice.merged
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

    def _generate_llm(
        self, inputs: Any, prompt_mask: Tensor, keys: list[bytes] | None = None, **kwargs: Any
    ) -> Any:
        """Generate on the full prompt with the layer hooks pruning inside the model."""
        check_llm_generate_kwargs(kwargs, self.model)
        self.adapter.reset_state()
        emb, vision = self.embed(inputs)
        pruner = self.llm_pruner(emb, prompt_mask, keys, self.layouts(inputs, emb), vision)
        full = self.unpruned(emb)
        full.input_ids = inputs["input_ids"]
        with torch.inference_mode(), self.feeding(full, pruner), lengths_from_call(self.model):
            out = self.model.generate(**full.generate_inputs(), **kwargs)
        self.adapter.reset_state()
        return self.llm_result(pruner, emb, vision), generated_ids(out, full.prompt_length())
