"""Pruning inside the language model: hooks on the decoder layers (model patching).

From a stage's layer K on, the dropped tokens leave the hidden states: layer K and the
layers after it run on a shorter sequence, so their KV cache holds only the kept tokens
while the layers below K hold every token. The hooks keep the rest of the model as it
is: HF's own ``generate``, its attention implementation (SDPA) and its rotary tables,
which are gathered at the kept tokens' ORIGINAL positions (M-RoPE included). Decoding
continues on this mixed cache with a per-layer-group attention mask; a static cache
(``cache_implementation="static"``) fills each layer's slots from 0 at its own pace and
hands attention all of them, so the masks are widened to its slots, unwritten ones out.

``mode="mask"`` is the reference: nothing is dropped; from layer K on the pruned tokens
are only masked out of attention. Its kept tokens' outputs equal drop mode's.

Not sync-free (issue 33 covers ``stage="input"`` only): the hooks read each pruned
layer's kept length back from the device to shorten the hidden states.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from vissparse.llm.attention import AttentionRequest, text_attention_slot
from vissparse.llm.masks import (
    decode_mask,
    gather_positions,
    gather_tokens,
    inverse_index,
    left_pack,
    prefill_mask,
    widen_keys,
)
from vissparse.llm.schedule import LayerSchedule

# Which text tokens' attention ranks the image tokens (see strategies.text_attention).
Rows = Literal["last", "instruction", "prompt"]
ROWS = ("last", "instruction", "prompt")


def check_attention_readable(
    schedule: LayerSchedule, recurrent: frozenset[int], n_layers: int
) -> None:
    """Text attention is read from the layer before each stage: it must have attention.

    Example:
        >>> check_attention_readable(LayerSchedule.build(2, 0.5), frozenset({1}), 4)
        Traceback (most recent call last):
        ...
        ValueError: text attention is read from the layer before each stage, but layer(s) [1] are linear-attention layers, which have no attention weights; choose `layer` among [1, 3]
    """  # noqa: E501
    read_from = [k - 1 for k in schedule.layers if k - 1 in recurrent]
    if read_from:
        choices = [i + 1 for i in range(n_layers - 1) if i not in recurrent]
        raise ValueError(
            f"text attention is read from the layer before each stage, but layer(s) "
            f"{read_from} are linear-attention layers, which have no attention weights; "
            f"choose `layer` among {choices}"
        )


def _cached_keys(kwargs: dict[str, Any], layer: int, n_query: int) -> int:
    """The keys ``layer``'s attention will see, per its KV cache (0 when unknown).

    A dynamic cache holds what was written and the new queries; a static one (HF's
    ``cache_implementation="static"``) always hands over all its slots.
    """
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    layers = getattr(cache, "layers", None)
    if layers is None or layer >= len(layers) or not hasattr(layers[layer], "get_mask_sizes"):
        return 0
    return int(layers[layer].get_mask_sizes(n_query)[0])


@dataclass
class StageView:
    """What one stage's selection sees, at the input of its layer, in prefill.

    Attributes:
        stage: the stage's index in the schedule.
        keep_ratio: the fraction of the tokens still alive that this stage keeps.
        hidden: ``[B, L_cur, D]`` hidden states entering the stage's layer.
        position: ``[B, L]`` long: each ORIGINAL position's column in ``hidden``, or -1
            for padding and tokens already dropped.
        prompt_mask: ``[B, L_cur]`` the user's words, in ``hidden``'s columns.
        attention: ``[B, L_cur]`` float32 text attention to each column at the layer
            before, or ``None`` when the method needs none.
        content_mask: ``[B, L_cur]`` the user's content words, in ``hidden``'s columns,
            or ``None`` when the pipeline gave none.
    """

    stage: int
    keep_ratio: float
    hidden: Tensor
    position: Tensor
    prompt_mask: Tensor
    attention: Tensor | None
    content_mask: Tensor | None = None


# A stage's selection: the new [B, L] keep mask over original positions, and the hidden
# states with merged tokens written in (or None when nothing merges).
Select = Callable[[StageView], tuple[Tensor, Tensor | None]]


@dataclass
class LayerPruner:
    """Hooks that prune inside ``layers`` by ``schedule`` for one call; use as a context.

    Attributes:
        layers: the language model's decoder layers.
        schedule: the stages.
        select: the selection of each stage (the pipeline's scorer and strategy).
        attention_mask: ``[B, L]`` the unpruned prompt's padding mask (left padding).
        prompt_mask: ``[B, L]`` the user's words.
        content_mask: ``[B, L]`` the user's content words (``None``: none given); each
            stage sees it in the current columns, as ``prompt_mask``.
        mode: ``"drop"`` or ``"mask"`` (the reference).
        rows: whose attention the method reads (``None``: none).
        eager: the model uses eager attention (additive float masks) rather than SDPA.
        recurrent: indices of linear-attention layers (Qwen3.5's Gated DeltaNet). From
            a stage on they get the 2-D mask of the real columns in prefill (their
            padding is zeroed before it enters the state) and none when decoding; no
            text attention is read from them, and mask mode is refused (a masked token
            would still enter their state).

    After the call, ``keep`` holds the ``[B, L]`` keep mask after each stage,
    ``kv_lengths`` the KV-cache length of each layer after prefill and ``ms`` the
    time spent in the hooks' own work (scores, selection, gathers, masks).
    """

    layers: Sequence[Any]
    schedule: LayerSchedule
    select: Select
    attention_mask: Tensor
    prompt_mask: Tensor
    content_mask: Tensor | None = None
    mode: Literal["drop", "mask"] = "drop"
    rows: Rows | None = None
    eager: bool = False
    recurrent: frozenset[int] = frozenset()
    keep: list[Tensor] = field(default_factory=list)
    ms: float = 0.0

    def __post_init__(self) -> None:
        self.schedule.check_depth(len(self.layers))
        if self.rows is not None and self.rows not in ROWS:
            raise ValueError(f"`rows` must be one of {ROWS}, got {self.rows!r}")
        if self.rows is not None and self.schedule.layers[0] == 0:
            raise ValueError(
                "`layer` 0 has no layer before it to read text attention from; use layer >= 1"
            )
        if self.recurrent and self.mode == "mask":
            raise ValueError(
                "mode='mask' is no reference with linear-attention layers: a masked token "
                "still enters their recurrent state; use mode='drop'"
            )
        if self.rows is not None:
            check_attention_readable(self.schedule, self.recurrent, len(self.layers))
        self.length = int(self.attention_mask.shape[1])
        self._real = self.attention_mask.bool()
        self._stage_at = {layer: s for s, layer in enumerate(self.schedule.layers)}
        self._capture_at = (
            {layer - 1: s for s, layer in enumerate(self.schedule.layers)} if self.rows else {}
        )
        self._requests: dict[int, AttentionRequest] = {}
        self._slots: dict[int, Any] = {}
        self._prefilled = False
        self._n_past = 0
        self._index: Tensor | None = None  # drop mode: original position of each column
        self._valid = self._real  # the keys of the current layer group
        self._keep = self._real
        self._prefill_kwargs: dict[str, Any] = {}
        self._group_valid: list[Tensor] = []  # per stage: the keys its layers' caches hold
        self._decode_masks: dict[tuple[int, int, int, int], Tensor] = {}

    # --- bookkeeping -------------------------------------------------------------------
    def columns(self) -> tuple[Tensor, Tensor] | None:
        """After a drop: each current column's original position and whether it is real.

        ``None`` while the layers run on the full sequence (before the first stage, and
        always in mask mode). Layer additions (Qwen3-VL's DeepStack) are gathered with it.
        """
        if self._index is None:
            return None
        return self._index, self._valid

    def _mask_dtype(self, hidden: Tensor) -> torch.dtype | None:
        return hidden.dtype if self.eager else None

    def _position(self) -> Tensor:
        """Each original position's current column, -1 if padding or dropped."""
        if self._index is None:
            cols = torch.arange(self.length, device=self._real.device).expand_as(self._real)
            return torch.where(self._keep, cols, -1)
        return inverse_index(self._index, self._valid, self.length)

    def _current(self, values: Tensor) -> Tensor:
        """``[B, L]`` per-position values in the current columns."""
        if self._index is None:
            return values
        return gather_positions(values, self._index) & self._valid

    def _run_stage(self, stage: int, hidden: Tensor, kwargs: dict[str, Any]) -> Tensor:
        request = self._requests.get(stage)
        view = StageView(
            stage=stage, keep_ratio=self.schedule.relative_ratios()[stage], hidden=hidden,
            position=self._position(), prompt_mask=self._current(self.prompt_mask),
            attention=None if request is None else request.result,
            content_mask=None if self.content_mask is None else self._current(self.content_mask),
        )  # fmt: skip
        if self.rows is not None and view.attention is None:
            raise RuntimeError(f"no text attention was read for stage {stage}")
        keep, merged = self.select(view)
        keep = keep.to(self._keep.device) & self._keep
        if merged is not None:
            hidden = merged
        self._keep = keep
        self.keep.append(keep)
        dtype = self._mask_dtype(hidden)
        updates: dict[str, Any] = {}
        if self.mode == "drop":
            columns = view.position
            index, valid = left_pack(keep)
            hidden = gather_tokens(hidden, columns.gather(1, index).clamp(min=0))
            self._index, self._valid = index, valid
            cos_sin = kwargs.get("position_embeddings")
            if cos_sin is not None:
                updates["position_embeddings"] = tuple(gather_tokens(t, index) for t in cos_sin)
            ids = kwargs.get("position_ids")
            if isinstance(ids, Tensor) and ids.shape[-1] == self.length:
                updates["position_ids"] = gather_positions(ids, index)
        else:
            self._valid = keep
        updates["attention_mask"] = prefill_mask(self._valid, dtype)
        self._prefill_kwargs = updates
        self._group_valid.append(self._valid)
        return hidden

    def _arm(self, stage: int, hidden: Tensor) -> None:
        """Ask the attention before ``stage``'s layer for the rows the method reads."""
        prompt = self._current(self.prompt_mask)
        b, length = prompt.shape
        device = hidden.device
        if self.rows == "last":
            rows = torch.full((b, 1), length - 1, dtype=torch.long, device=device)
            row_valid = torch.ones(b, 1, dtype=torch.bool, device=device)
        elif self.rows == "instruction":
            cols = torch.arange(length, device=device).expand(b, length)
            rows = torch.where(prompt, cols, -1).amax(dim=1, keepdim=True)
            row_valid = rows >= 0
            rows = rows.clamp(min=0)
        else:
            rows, row_valid = left_pack(prompt)
        self._requests[stage] = AttentionRequest(rows, row_valid, self._valid.clone())
        self._slots[stage].request = self._requests[stage]

    # --- hooks -------------------------------------------------------------------------
    def _pre_hook(self, layer: int) -> Callable[..., Any]:
        def hook(module: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
            start = time.perf_counter()
            hidden = args[0] if args else kwargs["hidden_states"]
            grouped = layer >= self.schedule.layers[0]
            if not self._prefilled:
                if layer in self._stage_at:
                    hidden = self._run_stage(self._stage_at[layer], hidden, kwargs)
                if layer in self._capture_at:
                    self._arm(self._capture_at[layer], hidden)
                if grouped:
                    kwargs.update(self._prefill_kwargs)
                    if layer in self.recurrent:  # a 2-D mask: zero the padding columns
                        kwargs["attention_mask"] = self._valid
                    else:
                        n_keys = _cached_keys(kwargs, layer, int(hidden.shape[1]))
                        kwargs["attention_mask"] = widen_keys(kwargs["attention_mask"], n_keys)
            elif grouped:
                recurrent = layer in self.recurrent  # one new token: nothing to mask
                kwargs["attention_mask"] = None if recurrent else self._step_mask(
                    layer, hidden, _cached_keys(kwargs, layer, int(hidden.shape[1]))
                )  # fmt: skip
            if args:
                args = (hidden, *args[1:])
            else:
                kwargs["hidden_states"] = hidden
            self.ms += (time.perf_counter() - start) * 1e3
            return args, kwargs

        return hook

    def _step_mask(self, layer: int, hidden: Tensor, n_keys: int = 0) -> Tensor:
        """The decode mask of ``layer``'s stage group for this step (built once per step).

        ``n_keys``: the keys the layer's cache hands attention (a static cache: all its
        slots); the mask is widened to them.
        """
        group = sum(1 for start in self.schedule.layers if start <= layer) - 1
        q = int(hidden.shape[1])
        key = (group, self._n_past, q, n_keys)
        if key not in self._decode_masks:
            self._decode_masks = {k: v for k, v in self._decode_masks.items()
                                  if k[1] == self._n_past}  # fmt: skip
            valid = self._group_valid[group]
            mask = decode_mask(valid, self._n_past, q, self._mask_dtype(hidden))
            self._decode_masks[key] = widen_keys(mask, n_keys)
        return self._decode_masks[key]

    def _after_last(self, module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        if self._prefilled:
            self._n_past += int(hidden.shape[1])
        self._prefilled = True

    @contextmanager
    def installed(self) -> Iterator[LayerPruner]:
        """Hooks (and the text-attention slots) in place while the block runs."""
        first = min([*self._stage_at, *self._capture_at])
        with ExitStack() as stack:
            for stage, layer in enumerate(self.schedule.layers):
                if self.rows is not None:
                    attn = self.layers[layer - 1].self_attn
                    self._slots[stage] = stack.enter_context(text_attention_slot(attn))
            for layer in range(first, len(self.layers)):
                handle = self.layers[layer].register_forward_pre_hook(
                    self._pre_hook(layer), with_kwargs=True
                )
                stack.callback(handle.remove)
            handle = self.layers[-1].register_forward_hook(self._after_last, with_kwargs=True)
            stack.callback(handle.remove)
            yield self

    def kv_lengths(self) -> list[int]:
        """The prompt tokens each layer's KV cache holds after prefill (the longest row)."""
        lengths, current = [], self.length
        keeps = dict(zip(self.schedule.layers, self.keep, strict=False))
        for layer in range(len(self.layers)):
            if layer in keeps and self.mode == "drop":
                current = int(keeps[layer].sum(dim=1).max())
            lengths.append(current)
        return lengths
