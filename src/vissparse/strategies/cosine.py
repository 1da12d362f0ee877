"""Cosine similarity between image tokens and the prompt's words: the cosine family.

One scorer, :class:`CosineScorer`, with the options of issue 34 (which words, how the
words are combined, centred image tokens, direction); the registered names fix a few of
them: ``"cosine"`` (the default: per-word softmax mass on the least similar tokens after
centring the image's tokens), ``"cosine-mean"`` (the seed's plain form: cosine to the
mean prompt embedding, most similar kept), ``"cosine-least"`` (its negation, TRIM's and CDPruner's
direction) and ``"cosine-max"`` (the best single prompt word).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vissparse.content_words import content_or_prompt
from vissparse.strategies.base import TokenScorer, check_tokens_and_query
from vissparse.strategies.context import PruningContext
from vissparse.strategies.registry import register_scorer

EPS = 1e-8


def cosine_scores(image_tokens: Tensor, query: Tensor, eps: float = EPS) -> Tensor:
    """Cosine similarity of every token with its row's query, in float32.

    Zero vectors (token or query) score 0, never NaN.

    Example:
        >>> cosine_scores(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), torch.tensor([[2.0, 0.0]]))
        tensor([[1., 0.]])
    """
    tokens = image_tokens.float()
    q = query.float()
    dots = torch.einsum("bnd,bd->bn", tokens, q)
    norms = tokens.norm(dim=-1).clamp_min(eps) * q.norm(dim=-1, keepdim=True).clamp_min(eps)
    return dots / norms


WORDS = ("all", "content")
AGGREGATES = ("mean", "max", "softmax")


@register_scorer
class CosineScorer(TokenScorer):
    """Cosine relevance of each image token to the prompt; the default scorer (``"cosine"``).

    The default (``CosineScorer()``, name ``"cosine"``) centres each image's tokens on
    their mean, and each of the user's prompt words spreads a unit of softmax mass over the
    tokens LEAST similar to it; a token scores its mean mass (``words="all"``,
    ``aggregate="softmax"``, ``centre=True``, ``largest=False``, ``temperature=0.02``).
    Image tokens share one dominant direction, background tokens carry most of it, and
    the mean prompt embedding leans on it, so the plain cosine (``"cosine-mean"``) keeps
    background. Chosen from the grid of 24 options on both testbed checkpoints at keep
    0.10 and 0.25 (``benchmarks/text_relevance.py``, ``docs/methods/cosine.md``): the best
    worst cell, significantly above random in all four. It reads the prompt's word
    embeddings (signal ``"prompt_embeddings"``, filled by the HF, vLLM and mock
    pipelines); :meth:`score` without them takes the query as the only word.

    Options (keywords, checked with one-line errors):

    - ``words``: ``"all"`` the user's prompt tokens, or ``"content"`` its content words
      only (``PruningContext.content_mask``, :mod:`vissparse.content_words`: no function
      words, no punctuation; the whole prompt where a pipeline does not know the words or
      a row has no content word).
    - ``aggregate``: ``"mean"`` the cosine to the mean embedding of those words (the
      seed's form; with ``words="all"`` this is the context's query and needs no signal);
      ``"max"`` each token's highest cosine with any single word; ``"softmax"`` MMTok's
      P: each word spreads a unit of mass over the image's valid tokens,
      ``P[w, n] = softmax_n(cos(w, x_n) / temperature)``, and a token scores its mean mass
      over the words, ``sum_w P[w, n] / m`` (``temperature`` 0.02 is MMTok's LLaVA value;
      small temperatures give each word its few nearest tokens).
    - ``centre``: subtract each image's mean valid token from its tokens before any
      cosine. The words are not shifted: they live in the embedding table, and subtracting
      the image mean from them would make every score nearly ``-cos(token, image mean)``,
      the same whatever the prompt.
    - ``largest``: ``True`` keeps the most similar tokens; ``False`` negates each word's
      cosine before the aggregate (the least similar to the mean, the most opposite to some
      word, or EADP's ``softmax(-cos / T)``), the direction of TRIM, CDPruner and EADP.

    Each row is scored on its own (no batched kernel whose rounding depends on the batch)
    with fixed shapes (no host synchronisation); a row with no word scores 0 everywhere.

    Example:
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> CosineScorer(largest=True, words="all", aggregate="mean", centre=False).score(
        ...     tokens, torch.tensor([[1.0, 0.0]]))
        tensor([[1., 0.]])
        >>> CosineScorer(largest=False, words="all", aggregate="mean", centre=False).score(
        ...     tokens, torch.tensor([[1.0, 0.0]]))
        tensor([[-1., -0.]])
    """

    name = "cosine"

    def __init__(
        self, largest: bool = False, *, words: str = "all", aggregate: str = "softmax",
        centre: bool = True, temperature: float = 0.02,
    ) -> None:  # fmt: skip
        for arg, value in (("largest", largest), ("centre", centre)):
            if not isinstance(value, bool):
                raise TypeError(f"`{arg}` must be a bool, got {value!r}")
        if words not in WORDS:
            raise ValueError(f"`words` must be one of {', '.join(WORDS)}, got {words!r}")
        if aggregate not in AGGREGATES:
            raise ValueError(
                f"`aggregate` must be one of {', '.join(AGGREGATES)}, got {aggregate!r}"
            )
        t = temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < math.inf:
            raise ValueError(f"`temperature` must be a finite number > 0, got {t!r}")
        self.largest = largest
        self.words = words
        self.aggregate = aggregate
        self.centre = centre
        self.temperature = float(t)
        uses_words = words == "content" or aggregate != "mean"
        # per instance: the options decide whether the prompt's words are read
        self.requires = frozenset({"prompt_embeddings"}) if uses_words else frozenset()  # type: ignore[misc]

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Scores from the tokens and the mean-prompt query alone, float32 ``[B, N]``.

        Without the prompt's words, ``words="all"`` takes the query (the mean prompt
        embedding) as the only word: ``"max"`` is then the cosine to it and ``"softmax"``
        a monotone function of it, so the kept set is the ``"mean"`` option's.
        ``words="content"`` needs the content-word mask: use :meth:`score_context`.

        Example:
            >>> x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
            >>> CosineScorer().score(x, torch.tensor([[1.0, 0.0]])).argmax(-1).tolist()
            [2]
        """
        check_tokens_and_query(image_tokens, query, valid)
        if self.words == "content":
            raise ValueError(
                f"`scorer` {self!r} needs the prompt's word embeddings: call score_context "
                "with a PruningContext that has `prompt_embeddings` and `prompt_mask`"
            )
        if not self.centre and self.aggregate != "softmax":  # one batched call
            sims = cosine_scores(image_tokens, query)
            return sims if self.largest else -sims
        words = query.unsqueeze(1)
        mask = torch.ones(words.shape[:2], dtype=torch.bool, device=query.device)
        return self._rows(image_tokens, valid, words, mask)

    def score_context(self, ctx: PruningContext) -> Tensor:
        """Scores from the context (the prompt's words where an option needs them).

        A context without ``prompt_embeddings`` (one built from tokens and a query alone)
        is scored as :meth:`score` scores it: the query is the only word.
        """
        no_words = ctx.prompt_embeddings is None and self.words == "all"
        if not self.requires or no_words:  # TokenScorer's path: score(), keys to a subclass
            return super().score_context(ctx)
        check_tokens_and_query(ctx.image_tokens, ctx.query, ctx.valid)
        words = ctx.need("prompt_embeddings", self)
        mask = ctx.need("prompt_mask", self)
        assert isinstance(words, Tensor) and isinstance(mask, Tensor)
        if words.dim() != 3 or words.shape[0] != ctx.image_tokens.shape[0] \
                or mask.shape != words.shape[:2]:  # fmt: skip
            raise ValueError(
                f"`prompt_embeddings` must be [B, T, D] with `prompt_mask` [B, T] for "
                f"B = {ctx.image_tokens.shape[0]}, got {tuple(words.shape)} and "
                f"{tuple(mask.shape)}"
            )
        mask = mask.to(words.device).bool()
        if self.words == "content" and ctx.content_mask is not None:
            mask = content_or_prompt(ctx.content_mask, mask)
        return self._rows(ctx.image_tokens, ctx.valid, words, mask)

    def _rows(self, image_tokens: Tensor, valid: Tensor | None, words: Tensor,
              mask: Tensor) -> Tensor:  # fmt: skip
        t = image_tokens.float()
        v = torch.ones(t.shape[:2], dtype=torch.bool, device=t.device) if valid is None \
            else valid.to(t.device)  # fmt: skip
        w, m = words.float().to(t.device), mask.to(t.device)
        rows = [self._row(t[b], v[b], w[b], m[b]) for b in range(t.shape[0])]
        return torch.stack(rows) if rows else t.new_zeros(t.shape[:2])

    def _row(self, x: Tensor, v: Tensor, w: Tensor, m: Tensor) -> Tensor:
        """One image's scores: tokens ``x`` [N, D], valid ``v`` [N], words ``w`` [T, D]."""
        vf = v.float().unsqueeze(-1)
        if self.centre:
            x = x - (x * vf).sum(0) / vf.sum().clamp_min(1.0)
        mf = m.float().unsqueeze(-1)
        count = mf.sum().clamp_min(1.0)
        sign = 1.0 if self.largest else -1.0
        if self.aggregate == "mean":
            q = (w * mf).sum(0) / count
            return sign * cosine_scores(x.unsqueeze(0), q.unsqueeze(0))[0]
        sims = sign * (_unit(w) @ _unit(x).T)  # [T, N]
        if self.aggregate == "max":
            best = sims.masked_fill(~m.unsqueeze(-1), float("-inf")).amax(dim=0)
            return torch.where(m.any(), best, torch.zeros_like(best))
        logits = (sims / self.temperature).masked_fill(~v.unsqueeze(0), float("-inf"))
        mass = torch.where(v.unsqueeze(0), torch.softmax(logits, dim=-1), 0.0)
        return (mass * mf).sum(0) / count

    def __repr__(self) -> str:
        extra = f", temperature={self.temperature:g}" if self.aggregate == "softmax" else ""
        return (f"CosineScorer(largest={self.largest}, words={self.words!r}, "
                f"aggregate={self.aggregate!r}, centre={self.centre}{extra})")  # fmt: skip


def _unit(x: Tensor, eps: float = EPS) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


@register_scorer
class MeanCosineScorer(CosineScorer):
    """The seed's plain form: cosine to the mean prompt embedding (``"cosine-mean"``).

    All the user's prompt tokens, no centring, the most similar tokens kept. On the
    testbed it keeps background: image tokens share one dominant direction and the mean
    prompt embedding leans on it (``benchmarks/text_relevance.py``).

    Example:
        >>> MeanCosineScorer()
        CosineScorer(largest=True, words='all', aggregate='mean', centre=False)
    """

    name = "cosine-mean"

    def __init__(self) -> None:
        super().__init__(largest=True, words="all", aggregate="mean", centre=False)


@register_scorer
class LeastCosineScorer(CosineScorer):
    """Keep the tokens LEAST similar to the mean prompt embedding (``"cosine-least"``).

    The direction TRIM and CDPruner use; ``"cosine-mean"`` negated, no centring.

    Example:
        >>> LeastCosineScorer().largest
        False
    """

    name = "cosine-least"

    def __init__(self) -> None:
        super().__init__(largest=False, words="all", aggregate="mean", centre=False)


@register_scorer
class MaxCosineScorer(CosineScorer):
    """Score = the highest cosine between a token and any single prompt word (``"cosine-max"``).

    The mean of the prompt's word embeddings blurs a question about two things into one
    direction; here a token scores high if it matches any one word (all the user's prompt
    tokens, no centring). Needs the ``"prompt_embeddings"`` signal, which the HF, vLLM and
    mock pipelines fill.

    Example:
        >>> from vissparse.strategies.context import PruningContext
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
        >>> words = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> ctx = PruningContext(tokens, words.mean(1), prompt_embeddings=words,
        ...                      prompt_mask=torch.tensor([[True, True]]))
        >>> MaxCosineScorer().score_context(ctx).tolist()
        [[1.0, 1.0, 0.0]]
    """

    name = "cosine-max"

    def __init__(self) -> None:
        super().__init__(largest=True, words="all", aggregate="max", centre=False)


def max_cosine_scores(image_tokens: Tensor, words: Tensor, word_mask: Tensor,
                      eps: float = EPS) -> Tensor:  # fmt: skip
    """``[B, N]`` float32: each token's highest cosine with any of its row's words.

    ``words`` is ``[B, T, D]`` with ``word_mask`` ``[B, T]`` marking the words to use.

    Example:
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
        >>> words = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [9.0, 9.0]]])
        >>> max_cosine_scores(tokens, words, torch.tensor([[True, True, False]])).tolist()
        [[1.0, 1.0, 0.7071067690849304]]
    """
    t = image_tokens.float()
    w = words.float().to(t.device)
    mask = word_mask.to(t.device)

    def unit(x: Tensor) -> Tensor:
        return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)

    # row by row: batched kernels may round differently with the batch size, and a
    # row's scores must not depend on the other rows; the unused words are masked out
    # of the maximum (fixed shapes: no host synchronisation)
    rows = [(unit(t[b]) @ unit(w[b]).T).masked_fill(~mask[b], float("-inf")).amax(dim=-1)
            for b in range(t.shape[0])]  # fmt: skip
    return torch.stack(rows) if rows else t.new_zeros(t.shape[:2])
