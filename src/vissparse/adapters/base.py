"""What every model family adapter provides, and the code they share.

An adapter is the only code that reads HuggingFace model internals. Family differences
are data (:class:`FamilySpec`); behaviour that differs (image features, positions) is a
small method on the family's adapter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor

from vissparse.adapters.vision_signals import RawSignals, VisionSignals, capture
from vissparse.host_sync import host_copy, to_device
from vissparse.strategies.context import GridSegment, ImageLayout


@dataclass(frozen=True)
class FamilySpec:
    """Facts about one model family, as data.

    Attributes:
        name: the family name used by ``vissparse.testing.tiny_model``.
        model_types: ``config.model_type`` values this family covers.
        positions: ``"mrope"`` (3-D Qwen M-RoPE ids) or ``"linear"`` (1-D ids).
        feature_inputs: processor outputs passed to ``get_image_features``, in order.
        placeholders: image placeholder strings a user prompt must not contain.
        image_newline: whether image features contain learned row-newline tokens
            (LLaVA-NeXT), which are always kept and never scored.
        processor_class: the transformers processor class name.
        image_processor_class: the PIL-backend image processor class (no torchvision).
        layout: how an image's tokens lie on the picture (see
            :meth:`VLMAdapter.token_grid`): ``"merged_grid"`` (Qwen: the merged-patch
            grid over the whole resized image), ``"square_crop"`` (LLaVA-1.5: a square
            grid over the processor's centre crop), ``"base_tile"`` (LLaVA-NeXT: the
            first tokens are a square grid over the image squashed to a square) or
            ``"tiles"`` (InternVL: a square grid per tile, the last one a thumbnail of
            the image squashed to a square).
        nested_images: the processor takes images nested per prompt (LLaVA-OneVision:
            the images of a multi-image prompt are encoded untiled, as the model does).
        token_types: the model reads ``token_type_ids`` (1 on image tokens; Gemma 3's
            bidirectional attention among them), which the pruned batch carries too.
    """

    name: str
    model_types: tuple[str, ...]
    positions: Literal["mrope", "linear"]
    feature_inputs: tuple[str, ...]
    placeholders: tuple[str, ...]
    image_newline: bool
    processor_class: str
    image_processor_class: str
    layout: Literal["merged_grid", "square_crop", "base_tile", "tiles"]
    nested_images: bool = False
    token_types: bool = False


@dataclass(frozen=True)
class TokenGrid:
    """Where one image's tokens lie on the picture they were cut from.

    The grid's tokens are the image's tokens ``start`` to ``start + rows * cols``, in
    raster order (row by row, left to right); the grid evenly divides the picture that
    :meth:`VLMAdapter.grid_picture` returns.

    Attributes:
        rows: grid rows.
        cols: grid columns.
        start: index of the grid's first token among the image's tokens (1 when a CLS
            token comes first).
        label: what the grid covers when it is not all of the image's tokens
            (``"base tile"`` for LLaVA-NeXT), else ``""``.

    Example:
        >>> TokenGrid(rows=2, cols=3).n_tokens
        6
    """

    rows: int
    cols: int
    start: int = 0
    label: str = ""

    @property
    def n_tokens(self) -> int:
        """Number of tokens on the grid."""
        return self.rows * self.cols


@dataclass
class Embedded:
    """A batch after the vision encoder and projector, before the language model.

    Attributes:
        inputs_embeds: ``[B, L, D]`` text embeddings with image features scattered in.
        attention_mask: ``[B, L]`` as the processor made it (left padding).
        position_ids: ``[B, L]`` or, for M-RoPE, ``[3, B, L]``, on the FULL sequence.
        image_sample: for each image (in batch order), the row it belongs to.
        image_positions: for each image, the sequence indices of its tokens.
        scorable: for each image, which of its tokens may be pruned (``False`` for
            LLaVA-NeXT newline tokens).
        layer_additions: ``[B, L, D]`` tensors added to the outputs of the language
            model's first layers (Qwen3-VL's DeepStack features at the image tokens, zero
            elsewhere); empty for other families.
        row_lengths: each row's real tokens (the attention mask's sum), read on the host
            from the processor's mask; ``None`` where unknown (then read from the device).
    """

    inputs_embeds: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    image_sample: list[int]
    image_positions: list[Tensor]
    scorable: list[Tensor]
    layer_additions: list[Tensor] = field(default_factory=list)
    row_lengths: list[int] | None = None


class VLMAdapter:
    """Reads a HF vision-language model: image features, embeddings, positions.

    Example:
        >>> from vissparse.adapters import get_adapter
        >>> from vissparse.testing import tiny_model
        >>> model, _ = tiny_model("llava")
        >>> get_adapter(model).spec.name
        'llava'
    """

    def __init__(self, spec: FamilySpec, model: Any) -> None:
        self.spec = spec
        self.model = model
        self.image_token_id = int(model.config.image_token_id)

    # --- family-specific -------------------------------------------------------------
    def image_features(self, inputs: dict[str, Any]) -> list[Tensor]:
        """One ``[n_i, D]`` tensor per image, after the projector/merger."""
        args = [inputs[name] for name in self.spec.feature_inputs]
        output = self.model.model.get_image_features(*args)
        return list(output.pooler_output)

    def position_ids(self, inputs: dict[str, Any]) -> Tensor:
        """Position ids of the full (unpruned) sequence, pads at 0."""
        mask = inputs["attention_mask"]
        return (mask.long().cumsum(-1) - 1).clamp(min=0)

    def reset_state(self) -> None:
        """Forget anything the model caches between calls (nothing by default)."""

    def token_grid(self, inputs: dict[str, Any], image_index: int) -> TokenGrid:
        """The token grid of image ``image_index`` (batch order) of processed ``inputs``."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its token grid")

    def grid_picture(self, image: Image.Image, image_processor: Any) -> Image.Image:
        """The part of ``image`` (original pixels) that :meth:`token_grid` covers."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its token grid")

    def feature_layer(self) -> int:
        """The vision layer whose output feeds the projector (the default signal layer)."""
        return -1

    def vision_attention(self, layer: int) -> tuple[Any, Any]:
        """The vision attention module at ``layer`` and the hook body that reads it."""
        raise ValueError(f"the {self.spec.name} adapter does not provide vision attention signals")

    def projector(self) -> Any:
        """The module between the vision encoder and the language model."""
        raise ValueError(f"the {self.spec.name} adapter does not provide vision signals")

    def align_rows(
        self, inputs: dict[str, Any], values: Tensor, encoder_rows: bool
    ) -> list[Tensor]:
        """Encoder-order values as one token-aligned ``[n_i, d]`` tensor per image.

        ``values`` are ``[T, S, d]`` tiles (CLIP towers) or ``[seq, d]`` patches (Qwen).
        """
        raise ValueError(f"the {self.spec.name} adapter does not provide vision signals")

    @contextmanager
    def generating(self) -> Iterator[None]:
        """While the block runs, ``model.generate`` accepts the pruned ``inputs_embeds``.

        Nothing to do by default; see the Gemma 3 adapter.
        """
        yield

    def recurrent_layers(self) -> frozenset[int]:
        """Indices of the language model's linear-attention layers (Qwen3.5), else none.

        In them a token masked out of attention still changes the recurrent state later
        tokens read, so ``mode="mask"`` is no reference where there are any.
        """
        types = getattr(self.model.config.get_text_config(), "layer_types", None) or []
        return frozenset(i for i, kind in enumerate(types) if kind == "linear_attention")

    def decoder_layers(self) -> Any:
        """The language model's decoder layers (where ``stage="llm"`` prunes)."""
        return self.model.model.language_model.layers

    def llm_attention_kind(self) -> Literal["sdpa", "eager"]:
        """The language model's attention, if ``stage="llm"`` can mask it, else an error.

        The pruned layers get explicit 4-D masks: boolean for SDPA, additive for eager.
        FlashAttention takes no 4-D mask, so it is refused with the way out.
        """
        kind = self.model.model.language_model.config._attn_implementation
        if kind not in ("sdpa", "eager"):
            raise ValueError(
                f"stage='llm' needs the language model's attention to be 'sdpa' or 'eager', "
                f"got {kind!r}; load the model with attn_implementation='sdpa'"
            )
        return kind  # type: ignore[no-any-return]

    # --- shared ----------------------------------------------------------------------
    @contextmanager
    def capture_vision(self, layer: int) -> Iterator[RawSignals]:
        """While the block runs, record the attention signals of vision layer ``layer``."""
        module, compute = self.vision_attention(layer)
        with capture(module, compute) as raw:
            yield raw

    def embed_with_signals(
        self, inputs: dict[str, Any], layer: int, attention: bool = True, features: bool = False
    ) -> tuple[Embedded, VisionSignals]:
        """:meth:`embed`, plus the vision signals asked for, aligned with each image's tokens.

        ``attention``: the attention and keys of vision layer ``layer``; ``features``: the
        projector's input (the encoder's features before the projector).
        """
        seen: list[Tensor] = []

        def keep_input(module: Any, args: tuple) -> None:
            seen.append(args[0].detach().float())

        handle = self.projector().register_forward_pre_hook(keep_input) if features else None
        try:
            if attention:
                with self.capture_vision(layer) as raw:
                    emb = self.embed(inputs)
            else:
                raw, emb = RawSignals(), self.embed(inputs)
        finally:
            if handle is not None:
                handle.remove()
        start = time.perf_counter()
        att = keys = pre = None
        if attention:  # aligned together: one packing pass, channel 0 is the attention
            both = torch.cat([torch.cat(raw.attention)[..., None], torch.cat(raw.keys)], dim=-1)
            aligned = self.align_rows(inputs, both, encoder_rows=True)
            att, keys = [a[:, 0] for a in aligned], [a[:, 1:] for a in aligned]
        if features:
            pre = self.align_rows(inputs, torch.cat(seen), encoder_rows=False)
        ms = raw.ms + (time.perf_counter() - start) * 1e3
        for name, values in (("attention", att), ("feature", pre)):
            if values is None:
                continue
            for i, (v, positions) in enumerate(zip(values, emb.image_positions, strict=True)):
                if v.shape[0] != positions.numel():
                    raise ValueError(
                        f"image {i}: {v.shape[0]} {name} values for {positions.numel()} "
                        "image tokens; the adapter's alignment does not fit this model"
                    )
        return emb, VisionSignals(att, keys, layer, ms, pre)

    def layouts(self, inputs: dict[str, Any], emb: Embedded) -> list[ImageLayout]:
        """One :class:`ImageLayout` per image of the embedded batch (batch order)."""
        out = []
        for i, (positions, scorable) in enumerate(zip(emb.image_positions, emb.scorable,
                                                      strict=True)):  # fmt: skip
            grid = self.token_grid(inputs, i)
            out.append(image_layout(grid, ~scorable.cpu(), positions.numel()))
        return out

    def newline_tokens(self, features: Tensor) -> Tensor:
        """``[n]`` bool: which feature rows are the learned image-newline token."""
        if not self.spec.image_newline:
            return torch.zeros(features.shape[0], dtype=torch.bool, device=features.device)
        newline = self.model.model.image_newline.to(features)
        return (features == newline).all(dim=-1)

    @torch.inference_mode()
    def embed(self, inputs: dict[str, Any]) -> Embedded:
        """Embed a processed batch: scatter image features, compute full positions."""
        return self.scatter_features(inputs, self.image_features(inputs))

    def scatter_features(self, inputs: dict[str, Any], features: list[Tensor]) -> Embedded:
        """The batch's text embeddings with ``features`` (one per image) scattered in.

        Image spans and row lengths are read from the processor's ids and mask on the
        host (:func:`~vissparse.host_sync.host_copy`), so ``image_positions`` are CPU
        tensors and nothing here waits for the device.
        """
        input_ids = inputs["input_ids"]
        embeds = self.model.get_input_embeddings()(input_ids)
        features = [f.to(embeds.device, embeds.dtype) for f in features]
        host_mask = host_copy(input_ids) == self.image_token_id
        n_placeholders, n_features = int(host_mask.sum()), sum(f.shape[0] for f in features)
        if n_placeholders != n_features:
            raise ValueError(
                f"the prompt holds {n_placeholders} image tokens but the images gave "
                f"{n_features} features; the processor and model do not match"
            )
        rows, cols = host_mask.nonzero(as_tuple=True)  # row-major: the order of scattering
        flat = torch.cat(features) if features else embeds.new_zeros(0, embeds.shape[-1])
        embeds = embeds.index_put((to_device(rows, embeds.device), to_device(cols, embeds.device)),
                                  flat)  # fmt: skip
        samples, positions, offset = [], [], 0
        for f in features:
            span_rows = rows[offset : offset + f.shape[0]]
            if bool((span_rows != span_rows[0]).any()):
                raise ValueError("an image's tokens span two prompts; the batch is malformed")
            samples.append(int(span_rows[0]))
            positions.append(cols[offset : offset + f.shape[0]])
            offset += f.shape[0]
        return Embedded(
            inputs_embeds=embeds,
            attention_mask=inputs["attention_mask"],
            position_ids=self.position_ids(inputs),
            image_sample=samples,
            image_positions=positions,
            scorable=[~self.newline_tokens(f) for f in features],
            row_lengths=host_copy(inputs["attention_mask"]).sum(dim=1).tolist(),
        )


def image_layout(grid: TokenGrid, newline: Tensor, n_tokens: int) -> ImageLayout:
    """The layout of one image's ``n_tokens`` tokens: ``grid`` first, then newline-ended rows.

    ``newline`` (``[n_tokens]`` bool) marks LLaVA-NeXT's newline tokens. The tokens after
    the grid are rows of equal length, each closed by a newline (the anyres crops, after
    the model's unpadding). Newlines alone after the grid are loose (they close no grid
    row): one closes the grid itself (an image with no crops), several are crop rows the
    unpadding cut to zero columns (a tall image such as 200x40: transformers' ``int``
    rounding of the unpadded width gives 0, and the model still emits each row's
    newline). Unpadding to zero rows leaves no tokens after the grid. Without newlines
    the grid must be all the tokens (after ``grid.start`` leading tokens such as a CLS
    token).

    Example:
        >>> nl = torch.tensor([False] * 4 + [False, False, True] * 2)
        >>> layout = image_layout(TokenGrid(2, 2), nl, 10)
        >>> [s.shape for s in layout.segments], layout.segments[1].row_ends.tolist()
        ([(2, 2), (2, 2)], [6, 9])
        >>> image_layout(TokenGrid(2, 2), torch.tensor([False] * 4 + [True] * 4), 8).loose
        tensor([4, 5, 6, 7])
    """
    end = grid.start + grid.n_tokens
    base = ImageLayout.grid(grid.rows, grid.cols, grid.start, n_tokens=n_tokens, label=grid.label)
    rest = newline[end:]
    n_rest = n_tokens - end
    if n_rest < 0 or bool(newline[:end].any()):
        raise ValueError(
            f"{n_tokens} image tokens do not start with a {grid.rows}x{grid.cols} grid"
        )
    if n_rest == 0:
        return base
    lines = rest.nonzero().flatten()
    if lines.numel() == n_rest:  # no crop tokens: a grid-closing newline, or empty rows
        return ImageLayout(n_tokens, base.segments, loose=lines + end)
    rows = lines.numel()
    cols = (n_rest - rows) // rows if rows else 0
    ends = end + (torch.arange(rows) + 1) * (cols + 1) - 1
    if rows == 0 or cols == 0 or rows * (cols + 1) != n_rest or not torch.equal(lines + end, ends):
        raise ValueError(
            f"the {n_rest} image tokens after the {grid.rows}x{grid.cols} grid are not rows "
            "of equal length each closed by a newline token"
        )
    index = (ends - cols).unsqueeze(1) + torch.arange(cols)
    crops = GridSegment(index, row_ends=ends, label="crops")
    return ImageLayout(n_tokens, (*base.segments, crops))
