import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vissparse.query import pack_words
from vissparse.strategies import CosineScorer, PruningContext, TopKStrategy, build_scorer
from vissparse.strategies.base import select_tokens


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12), st.integers(0, 10**6), st.integers(0, 12))
def test_packing_keeps_each_rows_words_in_order(b, length, seed, slack):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, length, 3, generator=gen)
    mask = torch.rand(b, length, generator=gen) < 0.4
    content = mask & (torch.rand(b, length, generator=gen) < 0.5)
    width = int(mask.sum(1).max()) + slack  # any bound at or above the most words
    words, packed, packed_content = pack_words(emb, mask, width, content)
    assert words.shape == (b, min(max(width, 1), length), 3)
    for row in range(b):
        n = int(mask[row].sum())
        assert torch.equal(words[row, :n], emb[row, mask[row]])
        assert packed[row].tolist() == [True] * n + [False] * (packed.shape[1] - n)
        assert packed_content[row, :n].tolist() == content[row, mask[row]].tolist()
        assert not packed_content[row, n:].any()


def test_packed_words_score_as_the_whole_sequence():
    gen = torch.Generator().manual_seed(1)
    tokens, seq = torch.randn(2, 9, 8, generator=gen), torch.randn(2, 30, 8, generator=gen)
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[0, 20:25], mask[1, 3:6] = True, True
    content = mask.clone()
    content[0, 21] = False
    for scorer in (CosineScorer(), CosineScorer(words="content", aggregate="max")):
        full = PruningContext(tokens, seq[:, 0], prompt_embeddings=seq, prompt_mask=mask,
                              content_mask=content)  # fmt: skip
        words, packed, packed_content = pack_words(seq, mask, 5, content)
        small = PruningContext(tokens, seq[:, 0], prompt_embeddings=words, prompt_mask=packed,
                               content_mask=packed_content)  # fmt: skip
        torch.testing.assert_close(scorer.score_context(small), scorer.score_context(full))


def test_every_word_method_keeps_the_same_tokens_from_packed_words():
    """What the HF pipeline's packing changes: the shapes, not the kept tokens."""
    gen = torch.Generator().manual_seed(2)
    tokens, seq = torch.randn(2, 24, 8, generator=gen), torch.randn(2, 40, 8, generator=gen)
    features = torch.randn(2, 24, 6, generator=gen)
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0, 30:37], mask[1, 2:6] = True, True
    content = mask & (torch.arange(40) % 2 == 0)
    words, packed, packed_content = pack_words(seq, mask, 7, content)
    for name in ("cosine", "cosine-max", "mmtok", "dart", "cdpruner"):
        keeps = []
        for emb, m, c in ((seq, mask, content), (words, packed, packed_content)):
            ctx = PruningContext(tokens, seq[:, 0], prompt_embeddings=emb, prompt_mask=m,
                                 content_mask=c, vision_features=features)  # fmt: skip
            keeps.append(select_tokens(build_scorer(name), TopKStrategy(), ctx, 0.25).keep)
        assert torch.equal(*keeps), name
