"""Abstract interfaces for token scorers and mask strategies.

Pure tensor code: nothing here imports transformers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from vissparse.host_sync import values_on_host
from vissparse.keep_ratio import validate_keep_ratio
from vissparse.strategies.context import (
    PruningContext,
    Selection,
    check_requires,
    check_selection,
    newline_scores,
)


def check_tokens_and_query(image_tokens: Tensor, query: Tensor, valid: Tensor | None) -> None:
    """Raise a clear error when the shapes of a scorer's inputs do not fit together.

    Example:
        >>> check_tokens_and_query(torch.zeros(2, 5, 8), torch.zeros(2, 8), None)
    """
    if image_tokens.dim() != 3:
        raise ValueError(
            f"`image_tokens` must have shape [B, N, D], got {tuple(image_tokens.shape)}"
        )
    b, _, d = image_tokens.shape
    if query.shape != (b, d):
        raise ValueError(
            f"`query` must have shape [B, D] = [{b}, {d}] to match `image_tokens`, "
            f"got {tuple(query.shape)}"
        )
    check_valid(valid, image_tokens.shape[:2])


def check_valid(valid: Tensor | None, shape: torch.Size | tuple[int, ...]) -> None:
    """Raise when a `valid` mask is not a bool tensor of the given [B, N] shape.

    Example:
        >>> check_valid(torch.ones(2, 5, dtype=torch.bool), (2, 5))
    """
    if valid is None:
        return
    if valid.dtype != torch.bool or tuple(valid.shape) != tuple(shape):
        raise ValueError(
            f"`valid` must be a bool tensor of shape {tuple(shape)}, "
            f"got dtype {valid.dtype} and shape {tuple(valid.shape)}"
        )


def check_scores(scores: object, shape: tuple[int, ...], scorer: object) -> None:
    """Raise a ``ValueError`` naming ``scorer`` when its output breaks the contract.

    Example:
        >>> check_scores(torch.zeros(2, 3), (2, 3), "MyScorer")
    """
    name = type(scorer).__name__
    if not isinstance(scores, torch.Tensor) or not torch.is_floating_point(scores):
        raise ValueError(
            f"`scorer` {name} must return a floating tensor, got {type(scores).__name__}"
            + (f" of {scores.dtype}" if isinstance(scores, torch.Tensor) else "")
        )
    if tuple(scores.shape) != tuple(shape):
        raise ValueError(
            f"`scorer` {name} returned shape {tuple(scores.shape)}, expected {tuple(shape)}"
        )
    # a value check: free on the CPU, left out on an accelerator (NaN ranks lowest there)
    if values_on_host(scores) and bool(torch.isnan(scores).any()):
        raise ValueError(f"`scorer` {name} returned NaN scores")


def check_mask(mask: object, shape: tuple[int, ...], strategy: object) -> None:
    """Raise a ``ValueError`` naming ``strategy`` when its mask breaks the contract.

    Example:
        >>> check_mask(torch.ones(2, 3, dtype=torch.bool), (2, 3), "MyStrategy")
    """
    name = type(strategy).__name__
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"`strategy` {name} must return a bool tensor, got {got}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"`strategy` {name} returned shape {tuple(mask.shape)}, expected {tuple(shape)}"
        )


class TokenScorer(ABC):
    """Scores image tokens: higher means more worth keeping.

    Contract of :meth:`score`:

    - ``image_tokens``: ``[B, N, D]`` image tokens of one image per row, already in the
      space the query lives in (for real models: after the projector/merger, i.e. the
      language model's input-embedding space). Any floating dtype.
    - ``query``: ``[B, D]`` one query vector per row, derived from the prompt, in
      float32 (tokens come in the model's dtype: cast before mixing them).
    - ``valid``: optional ``[B, N]`` bool mask; ``False`` marks padding tokens. A scorer
      may give padding any value: strategies never keep invalid tokens.
    - returns ``[B, N]`` float32 scores on the device of ``image_tokens``, with no NaN.
    - rows are independent: a row's scores must not depend on the other rows.
    - a scorer whose ``requires`` lists ``"sample_keys"`` (or, the older spelling, sets
      ``uses_sample_keys = True``) is also given ``sample_keys``: one ``bytes`` key per
      row naming the sample (the HF pipeline hashes the image's pixels and the prompt),
      or ``None`` where the caller has none.
      ``RandomScorer`` seeds each row from it, so random masks are a pure function of
      the seed and the sample.

    Scorers that need more than tokens and query read a :class:`PruningContext`: they
    list the signals in ``requires`` (for example ``{"layouts"}``) and override
    :meth:`score_context`; a method that also merges tokens overrides :meth:`plan`. They
    never reach into a model.

    Example:
        >>> class NormScorer(TokenScorer):
        ...     name = "norm"
        ...     def score(self, image_tokens, query, valid=None):
        ...         return image_tokens.float().norm(dim=-1)
        >>> NormScorer().score(torch.ones(1, 3, 4), torch.ones(1, 4)).shape
        torch.Size([1, 3])
    """

    name: str = "custom"
    requires: ClassVar[frozenset[str]] = frozenset()
    # a method that overrides plan() but still keeps exactly the top-k budget of every
    # image says so: drop mode's packed length is then known on the host (no sync)
    exact_budget: ClassVar[bool] = False

    @abstractmethod
    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Return ``[B, N]`` float32 scores, higher = keep."""

    def score_context(self, ctx: PruningContext) -> Tensor:
        """Scores from the pruning context; by default :meth:`score` on its tokens."""
        if "sample_keys" in self.requires or getattr(self, "uses_sample_keys", False):
            return self.score(ctx.image_tokens, ctx.query, ctx.valid,  # type: ignore[call-arg]
                              sample_keys=ctx.sample_keys)  # fmt: skip
        return self.score(ctx.image_tokens, ctx.query, ctx.valid)

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """What to keep (and merge): by default ``strategy`` on :meth:`score_context`.

        The budget counts ``ctx.budget_mask()``; newline tokens (``ctx.layouts``) take the
        best score of the row they close, so they are kept with their row, within it.
        """
        return select_by_scores(ctx, self.score_context(ctx), keep_ratio, strategy, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BudgetedMethod(TokenScorer):
    """A method that chooses tokens for a given budget, so it overrides :meth:`plan`.

    Its choice depends on ``k`` (DART, CDPruner) or it merges (pool, VisionZip), so
    :meth:`score` is not defined; :meth:`row_budgets` gives each row's scorable tokens
    and its budget ``k`` (which counts ``ctx.budget_mask()``, LLaVA-NeXT's newlines
    included).

    Example:
        >>> class FirstK(BudgetedMethod):
        ...     name = "first-k"
        ...     def plan(self, ctx, keep_ratio, strategy):
        ...         keep = torch.zeros(ctx.image_tokens.shape[:2], dtype=torch.bool)
        ...         for row, index, k in self.row_budgets(ctx, keep_ratio):
        ...             keep[row, index[:k]] = True
        ...         return Selection(keep)
        >>> ctx = PruningContext(torch.zeros(1, 4, 2), torch.ones(1, 2))
        >>> FirstK().plan(ctx, 0.5, None).keep.tolist()
        [[True, True, False, False]]
    """

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Not defined: the method chooses for a budget; see :meth:`plan`."""
        raise ValueError(
            f"`scorer` {self.name!r} chooses tokens for a given budget: use it through "
            "VisSparse or select_tokens, not score()"
        )

    def select_picks(
        self, ctx: PruningContext, picks: list[Tensor], keep_ratio: float, strategy: MaskStrategy
    ) -> Selection:
        """Each row's ``picks`` (token indices, in pick order) ranked first, then selected."""
        scores = scores_from_picks(ctx.image_tokens.shape[1], picks)
        return select_by_scores(ctx, scores.to(ctx.image_tokens.device), keep_ratio, strategy,
                                self)  # fmt: skip

    def merge_rows(
        self, ctx: PruningContext, keep_ratio: float,
        row_fn: Callable[[int, Tensor, int], tuple[Tensor, Tensor]], merge_sum: bool = False,
    ) -> Selection:  # fmt: skip
        """A merging selection built row by row.

        ``row_fn(row, index, k)`` gets a row's scorable token indices and its budget, and
        returns ``(into, weight)`` over those tokens: ``into`` is a position in ``index``
        (-1: discarded), ``weight`` the merge weight.
        """
        b, n = ctx.image_tokens.shape[:2]
        into = torch.full((b, n), -1, dtype=torch.long)
        weight = torch.ones(b, n)
        for row, index, k in self.row_budgets(ctx, keep_ratio):
            row_into, row_weight = row_fn(row, index, k)
            into[row, index] = torch.where(row_into >= 0, index[row_into.clamp(min=0)], row_into)
            weight[row, index] = row_weight
        device = ctx.image_tokens.device
        return Selection.merging(into.to(device), weight.to(device), merge_sum=merge_sum)

    def row_budgets(self, ctx: PruningContext, keep_ratio: float) -> list[tuple[int, Tensor, int]]:
        """``(row, scorable token indices on the CPU, budget k)`` for each row of ``ctx``.

        Not sync-free: it reads each row's valid tokens and budget back to the host, and
        the methods built on it (DART, CDPruner, pool, VisionZip, PruMerge+) work row by
        row from there; their cost is in the benchmark's overhead.
        """
        from vissparse.strategies.topk import kept_count  # topk imports this module

        check_tokens_and_query(ctx.image_tokens, ctx.query, ctx.valid)
        keep_ratio = validate_keep_ratio(keep_ratio)
        b, n = ctx.image_tokens.shape[:2]
        valid = ctx.valid if ctx.valid is not None else torch.ones(b, n, dtype=torch.bool)
        counted = ctx.budget_mask().sum(dim=1).tolist()
        return [
            (row, valid[row].nonzero().flatten().cpu(), kept_count(keep_ratio, int(c)))
            for row, c in enumerate(counted)
        ]


def select_by_scores(
    ctx: PruningContext, scores: Tensor, keep_ratio: float, strategy: MaskStrategy,
    scorer: object,
) -> Selection:  # fmt: skip
    """``strategy`` on checked ``scores``, with the budget over ``ctx.budget_mask()``.

    Newline tokens (``ctx.layouts``) take the best score of the row they close, so they
    are kept with their row, within the budget.

    Example:
        >>> from vissparse.strategies import TopKStrategy
        >>> ctx = PruningContext(torch.zeros(1, 4, 2), torch.ones(1, 2))
        >>> scores = torch.tensor([[0.1, 0.4, 0.3, 0.2]])
        >>> select_by_scores(ctx, scores, 0.5, TopKStrategy(), "s").keep.tolist()
        [[False, True, True, False]]
    """
    shape = tuple(ctx.image_tokens.shape[:2])
    check_scores(scores, shape, scorer)
    if ctx.present is not None and ctx.layouts is not None:
        scores = newline_scores(scores, ctx.layouts)
    keep = strategy.select(scores, keep_ratio, ctx.budget_mask())
    check_mask(keep, shape, strategy)
    return Selection(keep)


def scores_from_picks(n: int, picks: Sequence[Tensor]) -> Tensor:
    """``[B, n]`` float32 scores ranking each row's ``picks`` (token indices) first, in order.

    Picked tokens score in (1, 2], earlier picks higher; the rest score 0. Methods whose
    choice depends on the budget (DART, CDPruner) turn their picks into scores this way
    and go through :func:`select_by_scores`, which keeps newline accounting in one place.

    Example:
        >>> scores_from_picks(4, [torch.tensor([2, 0])]).tolist()
        [[1.5, 0.0, 2.0, 0.0]]
    """
    out = torch.zeros(len(picks), n)
    for row, chosen in enumerate(picks):
        m = chosen.numel()
        out[row, chosen.cpu()] = 2.0 - torch.arange(m).float() / max(1, m)
    return out


def required_signals(scorer: TokenScorer) -> frozenset[str]:
    """The signals ``scorer`` needs, checked against :data:`SIGNALS`.

    Example:
        >>> from vissparse.strategies import RandomScorer
        >>> sorted(required_signals(RandomScorer()))
        ['sample_keys']
    """
    signals = set(check_requires(getattr(scorer, "requires", frozenset()), scorer))
    if getattr(scorer, "uses_sample_keys", False):  # the older spelling of the same thing
        signals.add("sample_keys")
    return frozenset(signals)


def reads_llm_attention(scorer: TokenScorer) -> bool:
    """Whether ``scorer`` ranks by attention inside the language model (``stage="llm"``).

    Example:
        >>> from vissparse.strategies import CosineScorer, FastVScorer
        >>> reads_llm_attention(FastVScorer()), reads_llm_attention(CosineScorer())
        (True, False)
    """
    return "text_attention" in required_signals(scorer)


class MaskStrategy(ABC):
    """Turns scores into a keep mask.

    Contract of :meth:`select`:

    - ``scores``: ``[B, N]`` float scores (higher = keep).
    - ``keep_ratio``: fraction of each row's valid tokens to keep, in ``[0.05, 1.0]``.
    - ``valid``: optional ``[B, N]`` bool mask; invalid (padding) tokens are never kept.
    - returns ``[B, N]`` bool, ``True`` = keep; deterministic for the same inputs.

    Example:
        >>> class KeepAll(MaskStrategy):
        ...     name = "all"
        ...     def select(self, scores, keep_ratio, valid=None):
        ...         return torch.ones_like(scores, dtype=torch.bool)
        >>> KeepAll().select(torch.zeros(1, 3), 0.5).tolist()
        [[True, True, True]]
    """

    name: str = "custom"

    @abstractmethod
    def select(self, scores: Tensor, keep_ratio: float, valid: Tensor | None = None) -> Tensor:
        """Return a ``[B, N]`` bool keep mask."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def score_and_select(
    scorer: TokenScorer,
    strategy: MaskStrategy,
    image_tokens: Tensor,
    query: Tensor,
    keep_ratio: float,
    valid: Tensor | None = None,
    sample_keys: Sequence[bytes] | None = None,
) -> Tensor:
    """Score, select, and check both outputs against their contracts: the keep mask.

    ``sample_keys`` reaches only scorers that require the ``"sample_keys"`` signal.

    Example:
        >>> from vissparse.strategies import MeanCosineScorer, TopKStrategy
        >>> keep = score_and_select(MeanCosineScorer(), TopKStrategy(), torch.eye(4)[None],
        ...                         torch.tensor([[0.0, 1.0, 0.0, 0.0]]), 0.25)
        >>> keep.tolist()
        [[False, True, False, False]]
    """
    ctx = PruningContext(image_tokens, query, valid, sample_keys=sample_keys)
    return select_tokens(scorer, strategy, ctx, keep_ratio).keep


def select_tokens(
    scorer: TokenScorer, strategy: MaskStrategy, ctx: PruningContext, keep_ratio: float
) -> Selection:
    """``scorer.plan`` on ``ctx``, checked: the keep mask and any merge assignment.

    Example:
        >>> from vissparse.strategies import MeanCosineScorer, TopKStrategy
        >>> ctx = PruningContext(torch.eye(4)[None], torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
        >>> select_tokens(MeanCosineScorer(), TopKStrategy(), ctx, 0.25).keep.tolist()
        [[False, False, True, False]]
    """
    check_tokens_and_query(ctx.image_tokens, ctx.query, ctx.valid)
    selection = scorer.plan(ctx, keep_ratio, strategy)
    return check_selection(selection, tuple(ctx.image_tokens.shape[:2]), scorer)
