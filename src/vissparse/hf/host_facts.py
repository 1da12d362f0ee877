"""Counts the input stage knows on the host before the device has run: no waiting.

Each image's token count follows from the processor's ids, and a method that keeps
exactly ``kept_count(keep_ratio, n)`` tokens of an ``n``-token image (top-k on any
scores: every scorer that keeps the default ``plan``, and methods that say so with
``exact_budget = True``) fixes every row's kept count, hence drop mode's packed length
and the KV cache's size, before any score exists. The pruning path then runs on the
device without reading a value back (:mod:`vissparse.host_sync`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vissparse.adapters import Embedded
from vissparse.pruning import image_counts
from vissparse.selection import SelectionCore
from vissparse.strategies.base import TokenScorer
from vissparse.strategies.topk import TopKStrategy, kept_count


@dataclass(frozen=True)
class HostCounts:
    """Per prompt row: image tokens, kept image tokens, and real tokens after drop mode.

    Example:
        >>> HostCounts([16, 8], [4, 2], [30, 20]).length
        30
    """

    n_image: list[int]
    n_kept: list[int]
    kept_tokens: list[int]

    @property
    def length(self) -> int:
        """Drop mode's packed length: the longest row's remaining tokens."""
        return max(self.kept_tokens, default=0)


def exact_budget(core: SelectionCore) -> bool:
    """Whether ``core``'s method keeps exactly the top-k budget of every image.

    Example:
        >>> exact_budget(SelectionCore("cosine", "topk"))
        True
        >>> exact_budget(SelectionCore("pool", "topk"))
        False
    """
    topk = type(core.strategy).select is TopKStrategy.select
    default_plan = type(core.scorer).plan is TokenScorer.plan
    return topk and (default_plan or bool(getattr(core.scorer, "exact_budget", False)))


def host_counts(core: SelectionCore, keep_ratio: float, emb: Embedded) -> HostCounts | None:
    """The batch's counts from host facts, or ``None`` when the method's count is not fixed.

    ``None`` also where ``emb`` carries no host row lengths; the caller then reads the
    counts from the device (a synchronisation).

    Example:
        >>> import torch
        >>> emb = Embedded(torch.zeros(1, 6, 2), torch.ones(1, 6), torch.zeros(1, 6), [0],
        ...                [torch.arange(1, 5)], [torch.ones(4, dtype=torch.bool)], row_lengths=[6])
        >>> host_counts(SelectionCore("cosine", "topk"), 0.25, emb)
        HostCounts(n_image=[4], n_kept=[1], kept_tokens=[3])
    """
    if emb.row_lengths is None or not exact_budget(core):
        return None
    n_image = [0] * len(emb.row_lengths)
    n_kept = [0] * len(emb.row_lengths)
    for row, positions in zip(emb.image_sample, emb.image_positions, strict=True):
        n_image[row] += positions.numel()
        n_kept[row] += kept_count(keep_ratio, positions.numel())
    kept = [length - n + k for length, n, k in zip(emb.row_lengths, n_image, n_kept, strict=True)]
    return HostCounts(n_image, n_kept, kept)


def reported_counts(
    counts: HostCounts | None, emb: Embedded, image_keep: list[Tensor], mask: Tensor, drop: bool
) -> tuple[list[int], list[int], list[float]]:
    """Per row: image tokens, kept image tokens, and the KV cache's tokens after prefill.

    From ``counts`` (host facts) where the method fixes them; else read back from the
    device (``image_keep``, and drop mode's packed ``mask``): a synchronisation.

    Example:
        >>> import torch
        >>> emb = Embedded(torch.zeros(1, 6, 2), torch.ones(1, 6, dtype=torch.long),
        ...                torch.zeros(1, 6), [0], [torch.arange(1, 5)], [], row_lengths=[6])
        >>> reported_counts(None, emb, [torch.tensor([True, False, False, False])],
        ...                 torch.ones(1, 3, dtype=torch.long), drop=True)
        ([4], [1], [3])
        >>> reported_counts(HostCounts([4], [1], [3]), emb, [], torch.ones(1, 3), drop=False)
        ([4], [1], [6])
    """
    if counts is None:
        n_image, n_kept = image_counts(emb.attention_mask.shape[0], emb.image_sample, image_keep)
        kv = (mask if drop else emb.attention_mask).sum(dim=1).tolist()
        tokens: list[float] = [int(k) for k in kv]  # whole numbers, as the mask counts them
        return n_image, n_kept, tokens
    rows: list[float] = list(counts.kept_tokens if drop else (emb.row_lengths or []))
    return counts.n_image, counts.n_kept, rows


def assert_counts(counts: HostCounts, attention_mask: Tensor, keep_seq: Tensor) -> None:
    """Check, on the device and without waiting, that each row keeps its host count.

    A method that declares ``exact_budget`` but keeps another count would otherwise be
    cut silently by drop mode's host-known length; a CUDA device assert stops it (on the
    CPU it raises at once).

    Example:
        >>> assert_counts(HostCounts([2], [1], [3]), torch.ones(1, 4),
        ...               torch.tensor([[True, False, True, True]]))
    """
    expected = torch.tensor(counts.kept_tokens, dtype=torch.long)
    expected = expected.to(keep_seq.device, non_blocking=True)
    kept = (attention_mask.bool() & keep_seq).sum(dim=1)
    torch._assert_async(
        (kept == expected).all(), "a method with exact_budget kept another count than top-k"
    )


def word_columns(emb: Embedded) -> int:
    """A bound on any row's prompt words, from shapes alone: ``L`` less a row's image tokens.

    Each row's words are among its columns that are not image tokens, so the longest
    sequence less the fewest image tokens of any row bounds them
    (:func:`vissparse.query.pack_words` packs the words into that many columns). It holds
    in the language model too, where a stage has dropped image tokens but no word.

    Example:
        >>> from vissparse.adapters import Embedded
        >>> emb = Embedded(torch.zeros(2, 10, 1), torch.ones(2, 10), torch.zeros(2, 10),
        ...                [0, 1, 1], [torch.arange(6), torch.arange(3), torch.arange(4)], [])
        >>> word_columns(emb)
        4
    """
    images = [0] * emb.attention_mask.shape[0]
    for row, positions in zip(emb.image_sample, emb.image_positions, strict=True):
        images[row] += positions.numel()
    return emb.attention_mask.shape[1] - min(images, default=0)
