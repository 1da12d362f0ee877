"""CosineScorer's options: words, aggregate, centre, direction (issue 34 item 2)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies.strategies_hyp import token_batches
from vissparse.query import query_from_embeddings
from vissparse.strategies import (
    CosineScorer,
    PruningContext,
    TopKStrategy,
    cosine_scores,
    select_tokens,
)


def _cos(a, b):
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / max(na, 1e-8) / max(nb, 1e-8)


def reference(tokens, valid, words, mask, *, words_opt, content, aggregate, centre, largest,
              temperature=0.02):  # fmt: skip
    """The options, written out with Python loops over one row."""
    x = [list(map(float, t)) for t in tokens]
    v = list(map(bool, valid))
    if centre:
        kept = [t for t, ok in zip(x, v, strict=True) if ok]
        mu = [sum(col) / len(kept) for col in zip(*kept, strict=True)]
        x = [[a - b for a, b in zip(t, mu, strict=True)] for t in x]
    use = list(map(bool, mask))
    if words_opt == "content" and any(c and m for c, m in zip(content, mask, strict=True)):
        use = [bool(c and m) for c, m in zip(content, mask, strict=True)]
    w = [list(map(float, word)) for word, u in zip(words, use, strict=True) if u]
    sign = 1.0 if largest else -1.0
    if aggregate == "mean":
        q = [sum(col) / len(w) for col in zip(*w, strict=True)]
        return [sign * _cos(t, q) for t in x]
    if aggregate == "max":
        return [max(sign * _cos(t, word) for word in w) for t in x]
    out = [0.0] * len(x)
    for word in w:
        logits = [sign * _cos(word, t) / temperature for t in x]
        top = max(lg for lg, ok in zip(logits, v, strict=True) if ok)
        e = [math.exp(lg - top) if ok else 0.0 for lg, ok in zip(logits, v, strict=True)]
        for n, value in enumerate(e):
            out[n] += value / sum(e) / len(w)
    return out


OPTIONS = [
    dict(words=w, aggregate=a, centre=c, largest=lg)
    for w in ("all", "content") for a in ("mean", "max", "softmax")
    for c in (False, True) for lg in (True, False)
]  # fmt: skip


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_matches_the_literal_reference(opts):
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 7, 5, generator=gen) + torch.tensor([3.0, 0, 0, 0, 0])
    words = torch.randn(2, 4, 5, generator=gen)
    valid = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    mask = torch.tensor([[False, True, True, True], [True, True, True, False]])
    content = torch.tensor([[False, False, True, True], [False, False, False, False]])
    query = query_from_embeddings(words, mask)  # as the pipelines make it
    ctx = PruningContext(tokens, query, valid, prompt_embeddings=words, prompt_mask=mask,
                         content_mask=content)  # fmt: skip
    scores = CosineScorer(**opts).score_context(ctx)
    for b in range(2):
        expected = reference(tokens[b], valid[b], words[b], mask[b], content=content[b],
                             words_opt=opts["words"], aggregate=opts["aggregate"],
                             centre=opts["centre"], largest=opts["largest"])  # fmt: skip
        n = int(valid[b].sum())
        assert scores[b, :n].tolist() == pytest.approx(expected[:n], abs=1e-5)


def test_content_words_change_the_ranking():
    # the function word points along the shared direction (0, 0, 1): with it the mean
    # query ranks the background first, without it the object
    tokens = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 0.2, 3.0]]])  # object, background
    words = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]]])  # "car", "the"
    mask = torch.ones(1, 2, dtype=torch.bool)
    ctx = PruningContext(tokens, words.mean(1), prompt_embeddings=words, prompt_mask=mask,
                         content_mask=torch.tensor([[True, False]]))  # fmt: skip
    everything = CosineScorer(True, words="all", centre=False, aggregate="mean").score_context(ctx)
    content = CosineScorer(True, words="content", centre=False, aggregate="mean").score_context(ctx)
    assert int(everything.argmax()) == 1 and int(content.argmax()) == 0
    ctx.content_mask = None  # a pipeline that does not know the words: the whole prompt
    content = CosineScorer(True, words="content", centre=False, aggregate="mean")
    torch.testing.assert_close(content.score_context(ctx), everything)


def test_centring_subtracts_the_image_mean_from_the_tokens_only():
    # two objects and a background token sharing (0, 0, 5+); the query leans on the
    # shared direction, so the plain cosine ranks the background first
    tokens = torch.tensor([[[2.0, 0.0, 5.0], [0.0, 2.0, 5.0], [0.0, 0.0, 6.0]]])
    query = torch.tensor([[0.05, 0.0, 1.0]])
    plain = CosineScorer(True, centre=False, aggregate="mean").score(tokens, query)
    centred = CosineScorer(True, centre=True, aggregate="mean").score(tokens, query)
    assert int(plain.argmax()) == 2
    expected = cosine_scores(tokens - tokens.mean(dim=1, keepdim=True), query)
    torch.testing.assert_close(centred, expected)
    least = CosineScorer(False, centre=True, aggregate="mean").score(tokens, query)
    assert int(least.argmin()) == 2  # centred and negated: the background goes last
    # padding is left out of the image mean
    padded = torch.cat([tokens, torch.tensor([[[50.0, 50.0, 50.0]]])], dim=1)
    valid = torch.tensor([[True, True, True, False]])
    centring = CosineScorer(True, centre=True, aggregate="mean")
    torch.testing.assert_close(centring.score(padded, query, valid)[:, :3], centred)


def test_least_negates_each_word_before_the_aggregate():
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    words = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    ctx = PruningContext(tokens, words.mean(1), prompt_embeddings=words,
                         prompt_mask=torch.ones(1, 2, dtype=torch.bool))  # fmt: skip
    most = CosineScorer(True, aggregate="max", centre=False).score_context(ctx)
    least = CosineScorer(False, aggregate="max", centre=False).score_context(ctx)
    assert most[0].tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert least[0].tolist() == pytest.approx([0.0, 0.0, 1.0])  # most opposite to a word
    soft = CosineScorer(False, aggregate="softmax", centre=False).score_context(ctx)
    assert int(soft.argmax()) == 2  # EADP's softmax(-cos / T): mass on the opposite token


def test_softmax_is_a_distribution_per_word_over_valid_tokens():
    tokens = torch.randn(1, 6, 4)
    words = torch.randn(1, 3, 4)
    valid = torch.tensor([[True, True, True, True, False, False]])
    ctx = PruningContext(tokens, words.mean(1), valid, prompt_embeddings=words,
                         prompt_mask=torch.ones(1, 3, dtype=torch.bool))  # fmt: skip
    scores = CosineScorer(aggregate="softmax", temperature=0.5).score_context(ctx)
    assert float(scores.sum()) == pytest.approx(1.0)  # mean over words of unit masses
    assert scores[0, 4:].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("aggregate", ["mean", "max", "softmax"])
def test_a_row_with_no_word_scores_zero(aggregate):
    tokens = torch.randn(2, 4, 3)
    words = torch.randn(2, 2, 3)
    mask = torch.tensor([[True, True], [False, False]])  # vLLM: an image with no prompt
    ctx = PruningContext(tokens, torch.zeros(2, 3), prompt_embeddings=words, prompt_mask=mask)
    scores = CosineScorer(aggregate=aggregate, centre=True).score_context(ctx)
    assert scores[1].tolist() == [0.0] * 4 and bool(torch.isfinite(scores).all())


@settings(max_examples=25, deadline=None)
@given(token_batches(max_b=3, dtypes=(torch.float32,)), st.sampled_from(OPTIONS))
def test_rows_are_independent_and_keep_the_budget(batch, opts):
    tokens, query, valid = batch
    if valid is not None:
        valid[:, 0] = True  # every image has a token
    words = torch.stack([query, -query, query.roll(1, dims=-1)], dim=1)
    mask = torch.tensor([[True, True, False]]).expand(query.shape[0], 3)
    ctx = PruningContext(
        tokens,
        query,
        valid,
        prompt_embeddings=words,
        prompt_mask=mask,
        content_mask=torch.tensor([[True, False, False]]).expand_as(mask),
    )
    scorer = CosineScorer(**opts)
    scores = scorer.score_context(ctx)
    assert scores.dtype == torch.float32 and bool(torch.isfinite(scores).all())
    last = PruningContext(tokens[-1:], query[-1:], None if valid is None else valid[-1:],
                          prompt_embeddings=words[-1:], prompt_mask=mask[-1:],
                          content_mask=ctx.content_mask[-1:])  # fmt: skip
    assert torch.equal(scorer.score_context(last)[0], scores[-1])
    keep = select_tokens(scorer, TopKStrategy(), ctx, 0.25).keep
    n = valid.sum(1) if valid is not None else torch.full((tokens.shape[0],), tokens.shape[1])
    assert keep.sum(1).tolist() == [max(1, math.ceil(0.25 * int(k))) for k in n]


def test_requires_words_only_when_an_option_reads_them():
    assert CosineScorer(words="all", aggregate="mean", centre=True).requires == frozenset()
    assert CosineScorer(words="content").requires == {"prompt_embeddings"}
    assert CosineScorer(aggregate="max").requires == {"prompt_embeddings"}
    assert CosineScorer().requires == {"prompt_embeddings"}  # the default reads the words
    with pytest.raises(ValueError, match="word embeddings"):
        CosineScorer(words="content").score(torch.zeros(1, 2, 2), torch.ones(1, 2))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"words": "nouns"}, ValueError, "`words` must be one of all, content, got 'nouns'"),
    ({"aggregate": "sum"}, ValueError, "`aggregate` must be one of mean, max, softmax"),
    ({"centre": 1}, TypeError, "`centre` must be a bool, got 1"),
    ({"largest": "no"}, TypeError, "`largest` must be a bool"),
    ({"temperature": 0}, ValueError, "`temperature` must be a finite number > 0, got 0"),
    ({"temperature": float("nan")}, ValueError, "`temperature` must be a finite number > 0"),
])  # fmt: skip
def test_option_errors_are_one_line_and_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match) as err:
        CosineScorer(**kwargs)
    assert "\n" not in str(err.value)
