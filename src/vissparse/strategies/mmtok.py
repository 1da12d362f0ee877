"""MMTok: keep the image tokens that best cover the prompt's words and the image itself.

Dong et al., "MMTok: Multimodal Coverage Maximization for Efficient Inference of VLMs",
ICLR 2026 (arXiv:2508.18264); released code ``Ironieser/MMTok``
(``mmtok/core/semantic_selector.py::mm_coverage_selection``). Per image, with
unit-normalised rows:

- ``x`` ``[n, D]``: the image tokens after the projector (``ctx.image_tokens``);
- ``c`` ``[n, Dv]``: the vision encoder's features before the projector
  (``ctx.vision_features``; Qwen: the mean over each merge unit, as MMTok does);
- ``z`` ``[m, D]``: the input embeddings of the prompt's content words
  (``ctx.prompt_embeddings`` at ``ctx.content_mask``);

the coverage matrix ``C = [P; alpha Q]`` (``[m + n, n]``, rows to cover, columns the
candidates) has ``P = softmax(z x^T / tau_tv) / m`` and ``Q = softmax(c c^T / tau_vv) / n``
(softmax over the image tokens). MMTok maximises the coverage
``F(S) = sum_r max_{j in S} C[r, j]`` (``F(empty) = 0``) greedily: each step keeps the
token with the largest gain ``sum_r max(C[r, j] - best_r, 0)``, ties to the lower index
(``torch.argmax``), no lazy evaluation. Defaults as released: ``alpha = 0.5``,
``tau_vv = 0.2``, ``tau_tv = 0.02`` (the LLaVA path; the released Qwen2.5-VL path uses
``0.01``: pass ``MMTokScorer(tau_tv=0.01)``).

The greedy order does not depend on how many tokens are kept, so this is a scorer: the
``p``-th token picked scores ``(n - p) / n`` and top-k keeps MMTok's ``k`` tokens; under
top-k :meth:`MMTokScorer.plan` stops the loop after ``k`` picks. Deviations from the
released code:

- the words: MMTok strips two lmms-eval instructions, drops its own 47-word stoplist and
  embeds what is left word by word (``is_split_into_words``) with the LM's input
  embedding table; here the words are the pipeline's content-word mask over the prompt's
  own input embeddings (``ctx.content_mask``: the user's words less the pipeline's
  function words and punctuation, or all of them when none is left), tokenised in
  context. Where the pipeline gives no ``content_mask``, all the user's words
  (``ctx.prompt_mask``) are used. The released Qwen path embeds ``"Question: " +
  question`` with no stoplist; here Qwen gets the content words like every family;
- the budget is VisSparse's ``ceil(keep_ratio * n)`` (:func:`kept_count`), where the
  released Qwen path keeps ``floor`` and the LLaVA path an absolute count;
- batches: each row is one image with its own words; padding image tokens (and
  LLaVA-NeXT's newline tokens, ``valid`` False) are never candidates, never rows of
  ``Q`` and out of every softmax; each row divides by its own ``m`` and ``n``; unused
  word slots are zero rows (they never add gain). MMTok's padding exclusion only removes
  candidates;
- inputs are cast to float32 before normalising (MMTok normalises in the model's dtype);
- once a row's valid tokens are all picked, the loop goes on through its invalid tokens
  in index order (top-k never keeps them).

Cost: an ``[n, n]`` and an ``[T, n]`` similarity per image (``T`` the prompt slots) and
``k`` greedy steps, each ``O((T + n) n)`` over the batch. Sync-free: every step only
launches kernels (``k`` steps from Python; ``k`` of the padded width, known on the host).
Rows are independent: the similarities are computed row by row (a batched matrix
product may round differently with the batch size). A row's gains can still differ in
the last bits with the padded width of its batch (sums over zero padding regroup), which
can only reorder gains that tie to within rounding; exact ties (duplicate tokens) stay.

Example:
    >>> tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]])
    >>> words = torch.tensor([[[0.0, 1.0]]])  # one word, aligned with token 1
    >>> mask = torch.tensor([[True]])
    >>> mmtok_order(coverage_matrix(tokens, tokens, words, mask))[0].tolist()
    [1, 0, 2]
"""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.strategies.base import (
    MaskStrategy,
    TokenScorer,
    check_tokens_and_query,
)
from vissparse.strategies.context import PruningContext, Selection
from vissparse.strategies.greedy import plan_greedy, ranks_from_order
from vissparse.strategies.registry import register_scorer

EPS = 1e-8  # MMTok's clamp of the norms
ALPHA = 0.5
TAU_TV = 0.02  # the released LLaVA path (Qwen2.5-VL: 0.01)
TAU_VV = 0.2
_AFTER_VALID = -1e30  # below any gain (they are >= 0): invalid tokens only at the end


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=EPS)


def coverage_matrix(
    tokens: Tensor, features: Tensor, words: Tensor, word_mask: Tensor,
    valid: Tensor | None = None, alpha: float = ALPHA, tau_tv: float = TAU_TV,
    tau_vv: float = TAU_VV,
) -> Tensor:  # fmt: skip
    """``[B, T + N, N]`` float32 MMTok coverage ``[P; alpha Q]`` of each row's image.

    ``tokens`` ``[B, N, D]`` (after the projector), ``features`` ``[B, N, Dv]`` (before
    it), ``words`` ``[B, T, D]`` with ``word_mask`` ``[B, T]`` marking the words to
    cover, ``valid`` ``[B, N]`` the candidate image tokens. Columns and rows of invalid
    tokens and rows of unmarked words are 0; ``P`` divides by the row's word count,
    ``Q`` by its valid-token count.

    Example:
        >>> x, one = torch.eye(2)[None], torch.tensor([[True]])
        >>> coverage_matrix(x, x, x[:, :1], one, tau_tv=1e-3, tau_vv=1e-3).tolist()
        [[[1.0, 0.0], [0.25, 0.0], [0.0, 0.25]]]
    """
    b, n = tokens.shape[:2]
    device = tokens.device
    if valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=device)
    valid = valid.to(device)
    word_mask = word_mask.to(device)
    x = _unit(tokens.float())
    c = _unit(features.float().to(device))
    z = _unit(words.float().to(device))
    # row by row: a batched matrix product may round differently with the batch size
    tv = [z[i] @ x[i].T for i in range(b)]
    vv = [c[i] @ c[i].T for i in range(b)]
    if not tv:
        return tokens.new_zeros(0, words.shape[1] + n, n, dtype=torch.float32)
    column = valid[:, None, :]
    text = torch.softmax((torch.stack(tv) * (1.0 / tau_tv)).masked_fill(~column, float("-inf")),
                         dim=-1)  # fmt: skip
    image = torch.softmax((torch.stack(vv) * (1.0 / tau_vv)).masked_fill(~column, float("-inf")),
                          dim=-1)  # fmt: skip
    m = word_mask.sum(dim=1).clamp(min=1).float()[:, None, None]
    n_valid = valid.sum(dim=1).clamp(min=1).float()[:, None, None]
    zero = torch.zeros((), device=device)
    p = torch.where(word_mask[:, :, None] & column, text, zero) / m
    q = torch.where(valid[:, :, None] & column, image, zero) / n_valid
    return torch.cat([p, q * alpha], dim=1)


def mmtok_order(cover: Tensor, valid: Tensor | None = None, steps: int | None = None) -> Tensor:
    """``[B, steps]`` long: each row's tokens in MMTok's greedy coverage order.

    ``cover`` is :func:`coverage_matrix`. Each step picks the token with the largest
    coverage gain (ties to the lower index); a row's invalid tokens come after all its
    valid ones, in index order. ``steps`` defaults to every token.

    Example:
        >>> cover = torch.tensor([[[0.5, 0.4, 0.0], [0.0, 0.3, 0.3]]])
        >>> mmtok_order(cover).tolist()  # 1 covers most (0.7); then 2 adds 0.1, 0 adds 0.1
        [[1, 0, 2]]
    """
    b, r, n = cover.shape
    steps = n if steps is None else min(steps, n)
    device = cover.device
    order = torch.empty(b, steps, dtype=torch.long, device=device)
    if valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=device)
    valid = valid.to(device)
    rows = torch.arange(b, device=device)
    best = torch.zeros(b, r, dtype=cover.dtype, device=device)
    taken = torch.zeros(b, n, dtype=torch.bool, device=device)
    after_valid = torch.full((), _AFTER_VALID, dtype=cover.dtype, device=device)
    for p in range(steps):
        gain = (cover - best[:, :, None]).clamp_min(0).sum(dim=1)
        key = torch.where(valid, gain, after_valid).masked_fill(taken, float("-inf"))
        pick = key.argmax(dim=1)
        order[:, p] = pick
        taken[rows, pick] = True
        best = torch.maximum(best, cover[rows, :, pick])
    return order


def _positive(name: str, value: object, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (value >= 0 if allow_zero else value > 0):  # type: ignore[operator]
        expected = "a number >= 0" if allow_zero else "a number > 0"
        raise ValueError(f"`{name}` must be {expected}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


@register_scorer
class MMTokScorer(TokenScorer):
    """MMTok's greedy multimodal coverage order as scores (name ``"mmtok"``).

    Needs the ``"prompt_embeddings"`` (with ``content_mask``, else ``prompt_mask``) and
    ``"vision_features"`` signals. See the module docstring for the paper, the
    algorithm and every deviation from the released code. ``tau_tv``: text-image softmax
    temperature (0.02 as released for LLaVA, 0.01 for Qwen2.5-VL); ``tau_vv``:
    image-image; ``alpha``: weight of the image coverage.

    Example:
        >>> tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]])
        >>> ctx = PruningContext(tokens, torch.zeros(1, 2), vision_features=tokens,
        ...                      prompt_embeddings=torch.tensor([[[0.0, 1.0]]]),
        ...                      prompt_mask=torch.tensor([[True]]))
        >>> MMTokScorer().score_context(ctx)
        tensor([[0.6667, 1.0000, 0.3333]])
    """

    name = "mmtok"
    exact_budget = True  # top-k over its scores
    requires = frozenset({"prompt_embeddings", "vision_features"})

    def __init__(
        self, tau_tv: float = TAU_TV, tau_vv: float = TAU_VV, alpha: float = ALPHA
    ) -> None:
        self.tau_tv = _positive("tau_tv", tau_tv)
        self.tau_vv = _positive("tau_vv", tau_vv)
        self.alpha = _positive("alpha", alpha, allow_zero=True)

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Not defined on a single query: raises; use :meth:`score_context`."""
        raise ValueError(
            "`scorer` 'mmtok' needs the prompt's word embeddings and the vision features: "
            "call score_context with a PruningContext that has them"
        )

    def order(self, ctx: PruningContext, steps: int | None = None) -> Tensor:
        """``[B, steps]`` long: the first ``steps`` greedy picks of each row (all: ``None``)."""
        tokens = ctx.image_tokens
        check_tokens_and_query(tokens, ctx.query, ctx.valid)
        words = ctx.need("prompt_embeddings", self)
        features = ctx.need("vision_features", self)
        mask = ctx.content_mask if ctx.content_mask is not None else ctx.need("prompt_mask", self)
        assert isinstance(words, Tensor) and isinstance(features, Tensor)
        assert isinstance(mask, Tensor)
        b, n = tokens.shape[:2]
        if features.dim() != 3 or tuple(features.shape[:2]) != (b, n):
            raise ValueError(
                f"`vision_features` must be [B, N, Dv] = [{b}, {n}, Dv] to match "
                f"`image_tokens`, got {tuple(features.shape)}"
            )
        d = tokens.shape[2]
        mask_ok = mask.dtype == torch.bool and tuple(mask.shape) == tuple(words.shape[:2])
        if words.dim() != 3 or words.shape[0] != b or words.shape[2] != d or not mask_ok:
            raise ValueError(
                f"`prompt_embeddings` must be [B, T, D] = [{b}, T, {d}] with a "
                f"bool word mask [B, T], got {tuple(words.shape)} and {tuple(mask.shape)}"
            )
        cover = coverage_matrix(tokens, features, words, mask, ctx.valid, self.alpha,
                                self.tau_tv, self.tau_vv)  # fmt: skip
        return mmtok_order(cover, ctx.valid, steps)

    def score_context(self, ctx: PruningContext) -> Tensor:
        """``(n - p) / n`` for the ``p``-th token picked; top-k is MMTok's k-set."""
        return ranks_from_order(self.order(ctx), ctx.image_tokens.shape[1])

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """Under top-k, stop the greedy loop after ``k`` picks (``k`` of the padded width).

        The first ``k`` picks score as in :meth:`score_context` and the rest 0, so top-k
        keeps the same tokens; the padded width bounds every row's budget (newline
        tokens, which count against it, take their row's best score), so no count is
        read back.

        Example:
            >>> from vissparse.strategies import TopKStrategy
            >>> tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [0.0, 1.0]]])
            >>> ctx = PruningContext(tokens, torch.zeros(1, 2), vision_features=tokens,
            ...                      prompt_embeddings=torch.tensor([[[0.0, 1.0]]]),
            ...                      prompt_mask=torch.tensor([[True]]))
            >>> MMTokScorer().plan(ctx, 0.5, TopKStrategy()).keep.tolist()
            [[True, True, False, False]]
        """
        return plan_greedy(self, ctx, keep_ratio, strategy, lambda k: self.order(ctx, k))

    def __repr__(self) -> str:
        return f"MMTokScorer(tau_tv={self.tau_tv}, tau_vv={self.tau_vv}, alpha={self.alpha})"
