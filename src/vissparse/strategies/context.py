"""The pruning context: what a method may read about a batch of images, and what it returns.

Pure tensor code: the adapters fill a :class:`PruningContext`, methods read it. A method
declares the signals it needs in ``requires`` (names from :data:`SIGNALS`); the pipeline
computes only the signals some method asked for, plus the token layout where the family's
accounting needs it (LLaVA-NeXT's newline tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from vissparse.host_sync import to_device, values_on_host

# Signals a pipeline can fill. Each is a field of PruningContext.
SIGNALS = frozenset(
    {"prompt_embeddings", "layouts", "sample_keys", "vision_attention", "vision_keys",
     "vision_features", "text_attention", "prompt_texts"}
)  # fmt: skip


def check_requires(requires: object, method: object) -> frozenset[str]:
    """``requires`` as a frozenset, or a ``ValueError`` naming ``method`` and the signals.

    Example:
        >>> sorted(check_requires({"layouts"}, "pool"))
        ['layouts']
    """
    if isinstance(requires, str) or not isinstance(requires, (set, frozenset, tuple, list)):
        raise TypeError(f"`requires` of {method} must be a set of signal names, got {requires!r}")
    unknown = sorted(set(requires) - SIGNALS)
    if unknown:
        raise ValueError(
            f"{method} requires unknown signals {unknown}; available: {', '.join(sorted(SIGNALS))}"
        )
    return frozenset(requires)


def check_vision_layer(vision_layer: object) -> int | None:
    """A method's ``vision_layer``: an int (a vision layer, Python-style) or ``None``.

    Example:
        >>> check_vision_layer(-2)
        -2
    """
    if vision_layer is not None and (
        isinstance(vision_layer, bool) or not isinstance(vision_layer, int)
    ):
        raise ValueError(f"`vision_layer` must be an int or None, got {vision_layer!r}")
    return vision_layer


@dataclass(frozen=True)
class GridSegment:
    """A 2-D block of one image's tokens.

    Attributes:
        index: ``[rows, cols]`` long: the token index (among the image's tokens) of each
            grid cell, raster order.
        row_ends: ``[rows]`` long, the newline token that closes each grid row
            (LLaVA-NeXT's anyres tiles), or ``None``.
        label: what the block is (``"base tile"``, ``"crops"``), for plots and errors.

    Example:
        >>> GridSegment(torch.arange(6).view(2, 3)).shape
        (2, 3)
    """

    index: Tensor
    row_ends: Tensor | None = None
    label: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return int(self.index.shape[0]), int(self.index.shape[1])

    @property
    def n_tokens(self) -> int:
        """Grid cells plus newline tokens."""
        return self.index.numel() + (0 if self.row_ends is None else self.row_ends.numel())


@dataclass(frozen=True)
class ImageLayout:
    """Where one image's tokens lie: grid segments, and newline tokens.

    Attributes:
        n_tokens: the image's tokens, newlines included.
        segments: the 2-D blocks; together with ``loose`` they cover every token once.
        loose: newline tokens that close no grid row (LLaVA-NeXT's newline after a base
            tile with no crops), ``[m]`` long.

    Example:
        >>> layout = ImageLayout.grid(2, 3)
        >>> layout.n_tokens, layout.segments[0].shape, layout.newline.tolist()
        (6, (2, 3), [False, False, False, False, False, False])
    """

    n_tokens: int
    segments: tuple[GridSegment, ...]
    loose: Tensor | None = None

    @classmethod
    def grid(cls, rows: int, cols: int, start: int = 0, n_tokens: int | None = None,
             label: str = "") -> ImageLayout:  # fmt: skip
        """One ``rows x cols`` raster grid of tokens ``start ..``.

        Tokens before ``start`` (a CLS token) lie outside every segment.
        """
        index = torch.arange(start, start + rows * cols).view(rows, cols)
        total = start + rows * cols if n_tokens is None else n_tokens
        return cls(total, (GridSegment(index, label=label),))

    @classmethod
    def sequence(cls, n: int) -> ImageLayout:
        """A ``1 x n`` grid: the fallback when nothing is known about the geometry."""
        return cls.grid(1, n)

    @property
    def newline(self) -> Tensor:
        """``[n_tokens]`` bool: which tokens are newline tokens."""
        out = torch.zeros(self.n_tokens, dtype=torch.bool)
        for seg in self.segments:
            if seg.row_ends is not None:
                out[seg.row_ends] = True
        if self.loose is not None:
            out[self.loose] = True
        return out

    def line_of(self) -> Tensor:
        """``[n_tokens]`` long: for each grid token, the newline closing its row, else -1.

        A loose newline closes the whole first segment (LLaVA-NeXT puts it after a base
        tile that has no crops).
        """
        out = torch.full((self.n_tokens,), -1, dtype=torch.long)
        for seg in self.segments:
            if seg.row_ends is not None:
                out[seg.index] = seg.row_ends.unsqueeze(1).expand_as(seg.index)
        if self.loose is not None and self.loose.numel() and self.segments:
            out[self.segments[0].index.flatten()] = self.loose[0]
        return out


@dataclass
class PruningContext:
    """Everything a method may read about a batch of images, one image per row.

    Attributes:
        image_tokens: ``[B, N, D]`` post-projector image tokens (language-model input space).
        query: ``[B, D]`` float32 query per row (mean of the prompt's word embeddings).
        valid: ``[B, N]`` bool, tokens that may be scored (``False``: padding, newlines).
        present: ``[B, N]`` bool, the image's real tokens, newlines included (what the
            budget counts); ``None`` means the same as ``valid``.
        prompt_embeddings: ``[B, T, D]`` the row's prompt embeddings (signal
            ``"prompt_embeddings"``), with ``prompt_mask`` ``[B, T]`` marking the user's words
            (the pipelines pack the words first: ``T`` bounds the words, not the sequence).
        content_mask: ``[B, T]`` bool, the user's content words: ``prompt_mask`` less
            function words and punctuation, or ``prompt_mask`` itself in a row that has no
            content word (filled with ``"prompt_embeddings"``; ``None`` where the pipeline
            does not know the words).
        layouts: one :class:`ImageLayout` per row (signal ``"layouts"``).
        sample_keys: one ``bytes`` key per row naming the sample (signal ``"sample_keys"``).
        vision_attention: ``[B, N]`` float32, per token, from the method's
            ``vision_layer`` (``None``: the layer feeding the projector) (signal
            ``"vision_attention"``): the [CLS] token's attention
            for CLIP towers (LLaVA), the attention a token receives, pooled over its merge
            unit, for ViTs without [CLS] (Qwen); 0 on padding and newline tokens.
        vision_keys: ``[B, N, d]`` float32 head-averaged keys of that layer, aligned the
            same way (signal ``"vision_keys"``).
        vision_features: ``[B, N, D]`` float32, the projector's input: the vision
            encoder's features before the projector (Qwen: the mean over each token's merge
            unit), aligned with the tokens (signal ``"vision_features"``).
        text_attention: ``[B, N]`` float32, inside the language model only
            (``stage="llm"``): the attention the method's text tokens (its
            ``attention_rows``) pay each image token at the layer before pruning,
            averaged over heads and rows; 0 on padding and dropped tokens (signal
            ``"text_attention"``).
        prompt_texts: one ``str`` per row, the user's prompt as typed, image placeholders
            removed (signal ``"prompt_texts"``): for methods that encode the prompt with
            a text tower of their own (``trim``).

    Example:
        >>> ctx = PruningContext(torch.zeros(1, 4, 2), torch.ones(1, 2))
        >>> ctx.budget_mask().tolist()
        [[True, True, True, True]]
    """

    image_tokens: Tensor
    query: Tensor
    valid: Tensor | None = None
    present: Tensor | None = None
    prompt_embeddings: Tensor | None = None
    prompt_mask: Tensor | None = None
    content_mask: Tensor | None = None
    layouts: Sequence[ImageLayout] | None = None
    sample_keys: Sequence[bytes] | None = None
    vision_attention: Tensor | None = None
    vision_keys: Tensor | None = None
    vision_features: Tensor | None = None
    text_attention: Tensor | None = None
    prompt_texts: Sequence[str] | None = None

    def budget_mask(self) -> Tensor:
        """``[B, N]`` bool: the tokens the keep budget counts (``present``, else ``valid``)."""
        mask = self.present if self.present is not None else self.valid
        if mask is None:
            return torch.ones(self.image_tokens.shape[:2], dtype=torch.bool,
                              device=self.image_tokens.device)  # fmt: skip
        return mask

    def need(self, signal: str, method: object) -> object:
        """The value of ``signal``, or a ``ValueError`` naming ``method`` if it is missing."""
        value = getattr(self, signal)
        if value is None:
            raise ValueError(
                f"{method} requires the {signal!r} signal, which this pipeline did not "
                f"provide; list it in the method's `requires`"
            )
        return value


@dataclass
class Selection:
    """What a method decided for each image: which tokens stay, and what merges into them.

    Attributes:
        keep: ``[B, N]`` bool keep mask.
        merge_into: ``[B, N]`` long or ``None``: for each token, the kept token (index in
            its row) it is merged into, or -1 if it is discarded; kept tokens point at
            themselves. ``None``: no merging (a mask-only method).
        merge_weight: ``[B, N]`` float weights; a kept token becomes the weighted mean of
            the tokens merged into it (itself included). ``None`` means weight 1.
        merge_sum: if ``True`` a kept token becomes the weighted *sum* of its group
            instead (VisionZip's contextual tokens: target plus the mean of the rest).
        merged_values: ``[B, N, D]`` or ``None``: the kept tokens' values as the method
            computed them, for a merge that is no partition (PruMerge+'s released merge,
            where a token joins several kept tokens); :func:`merge_tokens` takes them
            instead of the groups.

    Example:
        >>> Selection.merging(torch.tensor([[0, 0, 2]])).keep.tolist()
        [[True, False, True]]
    """

    keep: Tensor
    merge_into: Tensor | None = None
    merge_weight: Tensor | None = None
    merge_sum: bool = False
    merged_values: Tensor | None = None

    @classmethod
    def merging(
        cls, merge_into: Tensor, merge_weight: Tensor | None = None, merge_sum: bool = False
    ) -> Selection:
        """A merging selection; the kept tokens are those that point at themselves."""
        n = merge_into.shape[-1]
        keep = merge_into == torch.arange(n, device=merge_into.device)
        return cls(keep, merge_into, merge_weight, merge_sum)


def check_selection(selection: object, shape: tuple[int, ...], method: object) -> Selection:
    """Raise a ``ValueError`` naming ``method`` when its selection breaks the contract.

    Example:
        >>> keep = torch.tensor([[True, False]])
        >>> check_selection(Selection(keep, torch.tensor([[0, 0]])), (1, 2), "m").keep.tolist()
        [[True, False]]
    """
    name = type(method).__name__ if not isinstance(method, str) else method
    if not isinstance(selection, Selection):
        raise ValueError(f"{name} must return a Selection, got {type(selection).__name__}")
    keep = selection.keep
    if not isinstance(keep, Tensor) or keep.dtype != torch.bool or tuple(keep.shape) != shape:
        raise ValueError(f"{name} must return a bool keep mask of shape {shape}")
    values = selection.merged_values
    if values is not None and tuple(values.shape[:2]) != shape:
        raise ValueError(f"{name}: `merged_values` must have shape {shape} + (D,)")
    into = selection.merge_into
    if into is None:
        return selection
    if into.dtype != torch.long or tuple(into.shape) != shape:
        raise ValueError(f"{name}: `merge_into` must be a long tensor of shape {shape}")
    weight = selection.merge_weight
    if weight is not None and tuple(weight.shape) != shape:
        raise ValueError(f"{name}: `merge_weight` must be non-negative of shape {shape}")
    if not values_on_host(into):  # value checks: free on the CPU, left out on a device
        return selection
    if bool(((into < -1) | (into >= shape[1])).any()):
        raise ValueError(f"{name}: `merge_into` values must be -1 or token indices < {shape[1]}")
    bad = (into >= 0) & ~keep.gather(1, into.clamp(min=0))
    bad |= keep & (into != torch.arange(shape[1], device=keep.device))
    if bool(bad.any()):
        row, col = (int(x) for x in bad.nonzero()[0])
        raise ValueError(
            f"{name}: `merge_into` must send each token to a kept token and each kept token "
            f"to itself; row {row} token {col} does not"
        )
    if weight is not None and bool((weight < 0).any()):
        raise ValueError(f"{name}: `merge_weight` must be non-negative of shape {shape}")
    return selection


def merge_tokens(tokens: Tensor, selection: Selection) -> Tensor:
    """The tokens after merging: each kept token becomes the weighted mean of its group.

    With ``selection.merge_sum`` it becomes the weighted sum instead. Tokens not kept are
    returned unchanged (they are dropped or masked afterwards). The arithmetic is float32;
    the result has the tokens' dtype.

    Example:
        >>> x = torch.tensor([[[1.0], [3.0], [8.0]]])
        >>> sel = Selection(torch.tensor([[True, False, True]]), torch.tensor([[0, 0, 2]]))
        >>> merge_tokens(x, sel).flatten().tolist()
        [2.0, 3.0, 8.0]
    """
    if selection.merged_values is not None:
        keep = selection.keep.to(tokens.device).unsqueeze(-1)
        return torch.where(keep, selection.merged_values.to(tokens.device, tokens.dtype), tokens)
    if selection.merge_into is None:
        return tokens
    into = selection.merge_into.to(tokens.device)
    weight = selection.merge_weight
    w = torch.ones(into.shape, device=tokens.device) if weight is None else weight.float()
    w = torch.where(into >= 0, w.to(tokens.device), torch.zeros_like(w.to(tokens.device)))
    target = into.clamp(min=0)
    sums = torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device)
    weighted = tokens.float() * w.unsqueeze(-1)
    sums.scatter_add_(1, target.unsqueeze(-1).expand(tokens.shape), weighted)
    totals = torch.zeros(into.shape, dtype=torch.float32, device=tokens.device)
    totals.scatter_add_(1, target, w)
    keep = selection.keep.to(tokens.device) & (totals > 0)
    merged = sums if selection.merge_sum else sums / totals.clamp_min(1e-12).unsqueeze(-1)
    return torch.where(keep.unsqueeze(-1), merged.to(tokens.dtype), tokens)


def newline_scores(scores: Tensor, layouts: Sequence[ImageLayout]) -> Tensor:
    """Scores with each newline token given the best score on the row it closes.

    A newline is then kept right after its row's best token (ties go to the lower index,
    and a newline follows its row), so at any budget the kept newlines are those of rows
    that keep a token, and they count against the budget like any image token.

    Example:
        >>> seg = GridSegment(torch.tensor([[0, 1], [3, 4]]), row_ends=torch.tensor([2, 5]))
        >>> layout = ImageLayout(6, (seg,))
        >>> newline_scores(torch.tensor([[0.1, 0.9, 0.0, 0.3, 0.2, 0.0]]), [layout]).tolist()
        [[0.10000000149011612, 0.8999999761581421, 0.8999999761581421, 0.30000001192092896, 0.20000000298023224, 0.30000001192092896]]
    """  # noqa: E501
    out = scores.clone()
    for row, layout in enumerate(layouts):
        loose = layout.loose is not None and layout.loose.numel() > 0 and layout.segments
        if not loose and all(seg.row_ends is None for seg in layout.segments):
            continue  # no token has a newline (as line_of says: every entry -1)
        n = layout.n_tokens
        line = layout.line_of()  # host: a token's newline, -1 if none
        # tokens with no newline go to a spare slot n: fixed shapes, no host wait
        line = to_device(torch.where(line >= 0, line, n), scores.device)
        best = torch.full((n + 1,), float("-inf"), device=scores.device)
        best.scatter_reduce_(0, line, scores[row, :n].float(), "amax")
        newline = to_device(layout.newline, scores.device)
        out[row, :n] = torch.where(newline, best[:n].to(out.dtype), out[row, :n])
    return out
