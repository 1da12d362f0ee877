"""The plugin's multimodal processor: fewer placeholders per image, the prompt alongside.

Mixed into a family's vLLM processor (and its processing info) by
:mod:`vissparse.vllm.models`. With the engine's ``vissparse`` settings:

- each image's placeholder run is cut to ``ceil(keep_ratio * n)`` tokens (the fair
  accounting of the HF path), so the scheduler, the KV cache and the encoder cache hold
  only the kept tokens;
- the user's prompt tokens (:mod:`vissparse.vllm.query`) go with each image to the
  model's embedding step, as the ``vissparse_query_ids`` field;
- they are part of each image's processor and encoder cache key, so the same image asked
  another question is scored again (the cache stays on, and stays correct).

Without the settings every method defers to vLLM's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from vissparse.strategies.topk import kept_count
from vissparse.vllm.query import TemplateParts, query_ids
from vissparse.vllm.settings import ServeSettings, settings_of

QUERY_KWARG = "vissparse_query"  # in the processor kwargs (and so in the cache key)
QUERY_FIELD = "vissparse_query_ids"  # per image, to the model's embedding step


class PruningInfo:
    """Processing-info mixin: the engine's settings, and processors without our kwargs."""

    ctx: Any
    _vissparse: tuple[ServeSettings | None] | None = None

    def vissparse_settings(self) -> ServeSettings | None:
        """The engine's ``vissparse`` settings (checked once), or ``None``."""
        if self._vissparse is None:
            self._vissparse = (settings_of(self.ctx.get_hf_config()),)
        return self._vissparse[0]

    def get_hf_processor(self, **kwargs: Any) -> Any:
        """The HF processor, without VisSparse's query (it is no HF processor option)."""
        kwargs.pop(QUERY_KWARG, None)
        return super().get_hf_processor(**kwargs)  # type: ignore[misc]


class PruningProcessor:
    """Multimodal-processor mixin (see the module docstring)."""

    info: Any
    image_placeholder: str = "<image>"  # the family's image token, as text

    def apply(self, inputs: Any, timing_ctx: Any) -> Any:
        """Attach the user's prompt tokens to the images, then process as vLLM does."""
        settings = self.info.vissparse_settings()
        items = inputs.mm_data_items
        if settings is None or len(items.get("image", ())) == 0:  # videos are served whole
            return super().apply(inputs, timing_ctx)  # type: ignore[misc]
        if type(items["image"]).__name__ == "ImageEmbeddingItems":
            raise ValueError(
                "VisSparse scores the image tokens it computes: pass images, not image "
                "embeddings, to an engine with `vissparse` settings"
            )
        ids = self._query_ids(inputs.prompt)
        kwargs = {**inputs.hf_processor_mm_kwargs, QUERY_KWARG: tuple(ids)}
        return super().apply(replace(inputs, hf_processor_mm_kwargs=kwargs), timing_ctx)  # type: ignore[misc]

    def _query_ids(self, prompt: Sequence[int]) -> list[int]:
        tokenizer = self.info.get_tokenizer()
        parts = getattr(self, "_vissparse_parts", None)
        if parts is None:
            owner = self.info.get_hf_processor()
            if not getattr(owner, "chat_template", None):
                owner = tokenizer
            parts = TemplateParts.from_template(owner, tokenizer, self.image_placeholder)
            self._vissparse_parts = parts
        image_id = tokenizer.convert_tokens_to_ids(self.image_placeholder)
        special = getattr(tokenizer, "all_special_ids", ())
        return query_ids(prompt, image_id, parts, special)

    def _call_hf_processor(self, hf_data: Mapping[str, Any], hf_kwargs: Mapping[str, Any]) -> Any:
        kwargs = dict(hf_kwargs)
        ids = kwargs.pop(QUERY_KWARG, None)
        out = super()._call_hf_processor(hf_data, kwargs)  # type: ignore[misc]
        grid = out.get("image_grid_thw")
        images = out.get("pixel_values") if grid is None else grid
        if ids is not None and images is not None and len(images):  # images were processed
            n = len(images)
            out[QUERY_FIELD] = torch.tensor([list(ids)] * n, dtype=torch.long).view(n, len(ids))
        return out

    def _get_mm_fields_config(self, hf_inputs: Any, hf_processor_mm_kwargs: Any) -> Any:
        fields = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))  # type: ignore[misc]
        if QUERY_FIELD in hf_inputs:
            from vllm.multimodal.inputs import MultiModalFieldConfig

            fields[QUERY_FIELD] = MultiModalFieldConfig.batched("image")
        return fields

    def _get_prompt_updates(
        self, mm_items: Any, hf_processor_mm_kwargs: Mapping[str, Any], out_mm_kwargs: Any
    ) -> Sequence[Any]:
        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)  # type: ignore[misc]
        settings = self.info.vissparse_settings()
        if settings is None:
            return updates
        return [_shrunk(u, settings.keep_ratio) if u.modality == "image" else u for u in updates]


def _shrunk(update: Any, keep_ratio: float) -> Any:
    """``update`` whose replacement keeps ``ceil(keep_ratio * n)`` of its ``n`` tokens."""
    replacement = update.replacement

    def kept(item_idx: int) -> list[int]:
        full = replacement(item_idx) if callable(replacement) else replacement
        if not isinstance(full, list) or len(set(full)) != 1:
            raise TypeError(
                "VisSparse expects an image's replacement to be a run of one placeholder "
                f"token, got {type(full).__name__}"
            )
        return full[: kept_count(keep_ratio, len(full))]

    return replace(update, replacement=kept)
