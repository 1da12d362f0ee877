"""vLLM's own model classes with VisSparse's embedding step, one thin subclass per family.

Registered over vLLM's architectures by :func:`vissparse.vllm.register`. Each defers to
vLLM unless the engine's config has ``vissparse`` settings; then its processor reserves
``ceil(keep_ratio * n)`` placeholders per image and ``embed_multimodal`` returns exactly
those tokens, chosen by the selection core. Positions:

- Qwen2-VL / Qwen2.5-VL (M-RoPE): kept tokens keep their original 3-D positions and the
  text after an image keeps its own (the HF path's default, ``positions="keep"``): the
  embeddings carry their ``(t, h, w)`` channels to vLLM's ``recompute_mrope_positions``,
  the path vLLM's Efficient Video Sampling uses.
- LLaVA-1.5 (1-D RoPE): vLLM numbers the sequence contiguously, the HF path's
  ``positions="compact"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from vllm.model_executor.models import llava, qwen2_5_vl, qwen2_vl
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.video_prune.evs import recompute_mrope_positions

from vissparse.strategies.context import ImageLayout
from vissparse.vllm.embedding import kept_embeddings, mrope_channels, video_channels
from vissparse.vllm.processing import QUERY_FIELD, PruningInfo, PruningProcessor
from vissparse.vllm.settings import settings_of

# where each pruned image's kept indices are appended, one JSON line per image, in the
# order the engine embeds them (for checks and debugging; unset: nothing is written)
KEPT_LOG = "VISSPARSE_VLLM_KEPT_LOG"


class PruningModel:
    """Model mixin: the engine's settings, and the pruned embedding of a batch of images."""

    config: Any
    # whether vLLM's runner must recompute the M-RoPE positions of a pruned prompt
    # (read by the runner hook of vissparse.vllm.register)
    vissparse_recomputes_positions = False
    _mrope = False

    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)  # type: ignore[call-arg]
        settings = settings_of(vllm_config.model_config.hf_config)
        self.vissparse_settings = settings
        self.vissparse_core = None if settings is None else settings.core()
        self.vissparse_recomputes_positions = self._mrope and settings is not None

    def _vissparse_prune(
        self, images: Sequence[Tensor], queries: Any, layouts: list[ImageLayout]
    ) -> list[tuple[Tensor, Tensor]]:
        """``(kept indices, kept embeddings)`` per image, the prompt embedded by the LM."""
        assert self.vissparse_settings is not None and self.vissparse_core is not None
        rows = [queries[i] for i in range(len(images))] if queries is not None else []
        embed = self.get_language_model().embed_input_ids  # type: ignore[attr-defined]
        prompts = [embed(r.to(images[0].device).long()) if r.numel() else images[0][:0]
                   for r in rows] or [images[0][:0] for _ in images]  # fmt: skip
        out = kept_embeddings(
            self.vissparse_core, self.vissparse_settings.keep_ratio, images, prompts, layouts
        )
        log = os.environ.get(KEPT_LOG)
        if log:
            with open(log, "a") as f:
                for (kept, _), image, query in zip(out, images, rows or [None] * len(out),
                                                   strict=True):  # fmt: skip
                    record = {"n": int(image.shape[0]), "kept": kept.tolist(),
                              "query": [] if query is None else query.tolist()}  # fmt: skip
                    f.write(json.dumps(record) + "\n")
        return out


def _served(info: type, processor: type, dummy_inputs: type, placeholder: str) -> Any:
    """Register vLLM's processing classes of a family, with the plugin's mixins, on a model."""
    info = type(f"VisSparse{info.__name__}", (PruningInfo, info), {})
    processor = type(f"VisSparse{processor.__name__}", (PruningProcessor, processor),
                     {"image_placeholder": placeholder})  # fmt: skip
    return MULTIMODAL_REGISTRY.register_processor(processor, info=info, dummy_inputs=dummy_inputs)


@_served(llava.LlavaProcessingInfo, llava.LlavaMultiModalProcessor,
         llava.LlavaDummyInputsBuilder, "<image>")  # fmt: skip
class VisSparseLlava(PruningModel, llava.LlavaForConditionalGeneration):
    """LLaVA-1.5 with pruned image tokens (contiguous 1-D positions)."""

    def embed_multimodal(self, **kwargs: Any) -> Any:
        """The image embeddings vLLM computes, each cut to its kept tokens."""
        queries = kwargs.pop(QUERY_FIELD, None)
        images = super().embed_multimodal(**kwargs)
        if self.vissparse_settings is None or len(images) == 0:
            return images
        vision = self.config.vision_config
        side = int(vision.image_size) // int(vision.patch_size)
        layouts = [_layout(side, side, int(image.shape[0])) for image in images]
        return tuple(e for _, e in self._vissparse_prune(list(images), queries, layouts))


class QwenPruning(PruningModel):
    """Qwen2-VL / Qwen2.5-VL: kept tokens carry their M-RoPE channels to vLLM's runner."""

    supports_multimodal_pruning = True
    _mrope = True

    def embed_multimodal(self, **kwargs: Any) -> Any:
        """The image embeddings vLLM computes, cut to the kept tokens, plus 4 position channels."""
        queries = kwargs.pop(QUERY_FIELD, None)
        if self.vissparse_settings is None:
            return super().embed_multimodal(**kwargs)  # type: ignore[misc]
        if "image_grid_thw" not in kwargs:  # videos: kept whole, with their positions
            videos = super().embed_multimodal(**kwargs)  # type: ignore[misc]
            return tuple(self._with_video_channels(videos, kwargs))
        grid: Any = kwargs["image_grid_thw"]
        images = super().embed_multimodal(**kwargs)  # type: ignore[misc]
        if len(images) == 0:
            return images
        grid = torch.cat(list(grid)) if isinstance(grid, (list, tuple)) else grid
        merge = int(self.config.vision_config.spatial_merge_size)
        shapes = [(int(h) // merge, int(w) // merge) for _, h, w in grid.view(-1, 3).tolist()]
        layouts = [_layout(r, c, int(e.shape[0])) for (r, c), e in zip(shapes, images, strict=True)]
        out = []
        for (kept, values), (r, c) in zip(self._vissparse_prune(list(images), queries, layouts),
                                          shapes, strict=True):  # fmt: skip
            channels = mrope_channels(r, c, kept).to(values.device, values.dtype)
            out.append(torch.cat([values, channels], dim=1))
        return tuple(out)

    def _with_video_channels(self, videos: Sequence[Tensor], kwargs: dict[str, Any]) -> Any:
        """Each video's embeddings (not pruned) with the channels of its full positions."""
        grid = kwargs.get("video_grid_thw")
        if grid is None or len(videos) == 0:
            return videos
        grid = torch.cat(list(grid)) if isinstance(grid, (list, tuple)) else grid
        seconds = kwargs.get("second_per_grid_ts")
        seconds = ([1.0] * len(videos) if seconds is None
                   else torch.as_tensor(seconds).flatten().tolist())  # fmt: skip
        per_second = float(getattr(self.config.vision_config, "tokens_per_second", 1.0))
        merge = int(self.config.vision_config.spatial_merge_size)
        out = []
        for video, (t, h, w), second in zip(videos, grid.view(-1, 3).tolist(), seconds,
                                            strict=True):  # fmt: skip
            channels = video_channels(int(t), int(h) // merge, int(w) // merge,
                                      float(second) * per_second)  # fmt: skip
            out.append(torch.cat([video, channels.to(video.device, video.dtype)], dim=1))
        return out

    def recompute_mrope_positions(
        self, input_ids: Any, multimodal_embeddings: Sequence[Tensor],
        mrope_positions: torch.LongTensor, num_computed_tokens: int,
    ) -> tuple[Sequence[Tensor], Tensor, int]:  # fmt: skip
        """Strip the position channels and place the kept tokens at their positions."""
        if self.vissparse_settings is None:  # vLLM's own (Qwen2.5-VL's video pruning)
            return super().recompute_mrope_positions(  # type: ignore[misc,no-any-return]
                input_ids, multimodal_embeddings, mrope_positions, num_computed_tokens
            )
        device = multimodal_embeddings[0].device if multimodal_embeddings else (
            mrope_positions.device)  # fmt: skip
        ids = torch.as_tensor(input_ids, dtype=torch.long, device=device)
        embeds = [mm[:, :-4] for mm in multimodal_embeddings]
        channels = [mm[:, -4:].permute(1, 0).long() for mm in multimodal_embeddings]
        positions, delta = recompute_mrope_positions(
            ids, channels, mrope_positions, num_computed_tokens,
            self.config.vision_start_token_id, self.config.image_token_id,
            self.config.video_token_id,
        )  # fmt: skip
        return embeds, positions, int(delta)

    def get_encoder_cudagraph_config(self) -> Any:
        """No encoder CUDA graphs while pruning: they bypass ``embed_multimodal``."""
        config = super().get_encoder_cudagraph_config()  # type: ignore[misc]
        if self.vissparse_settings is not None:
            config.modalities = []
        return config


@_served(qwen2_vl.Qwen2VLProcessingInfo, qwen2_vl.Qwen2VLMultiModalProcessor,
         qwen2_vl.Qwen2VLDummyInputsBuilder, "<|image_pad|>")  # fmt: skip
class VisSparseQwen2VL(QwenPruning, qwen2_vl.Qwen2VLForConditionalGeneration):
    """Qwen2-VL with pruned image tokens (original M-RoPE positions)."""


@_served(qwen2_5_vl.Qwen2_5_VLProcessingInfo, qwen2_5_vl.Qwen2_5_VLMultiModalProcessor,
         qwen2_5_vl.Qwen2_5_VLDummyInputsBuilder, "<|image_pad|>")  # fmt: skip
class VisSparseQwen2_5VL(QwenPruning, qwen2_5_vl.Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL with pruned image tokens (original M-RoPE positions)."""

    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        if self.vissparse_settings is not None and self.is_multimodal_pruning_enabled:
            raise ValueError(
                "`vissparse` settings and vLLM's video pruning (`video_pruning_rate`) cannot "
                "share an engine: both recompute the M-RoPE positions"
            )


def _layout(rows: int, cols: int, n: int) -> ImageLayout:
    """The image's token grid, or a sequence where the count does not match it."""
    return ImageLayout.grid(rows, cols) if rows * cols == n else ImageLayout.sequence(n)
