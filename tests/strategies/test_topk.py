import pytest
import torch

from vissparse.strategies import TopKStrategy, kept_count, topk_mask


@pytest.mark.parametrize(
    ("ratio", "n", "k"),
    [(0.1, 10, 1), (0.7, 10, 7), (0.3, 10, 3), (0.1, 576, 58), (0.05, 3, 1), (1.0, 5, 5),
     (0.25, 576, 144), (0.5, 0, 0), (0.05, 1, 1)],
)  # fmt: skip
def test_kept_count_examples(ratio, n, k):
    assert kept_count(ratio, n) == k


def test_ties_go_to_lower_index():
    scores = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0]])
    assert TopKStrategy().select(scores, 0.4).tolist() == [[False, True, True, False, False]]


def test_nan_scores_rank_last():
    scores = torch.tensor([[float("nan"), 0.1, 0.2, float("nan")]])
    assert TopKStrategy().select(scores, 0.5).tolist() == [[False, True, True, False]]


def test_padding_is_never_kept_even_with_top_scores():
    scores = torch.tensor([[9.0, 9.0, 0.1, 0.2]])
    valid = torch.tensor([[False, False, True, True]])
    assert TopKStrategy().select(scores, 0.5, valid).tolist() == [[False, False, False, True]]


def test_valid_tokens_with_minus_inf_beat_padding():
    scores = torch.tensor([[5.0, -float("inf"), -float("inf")]])
    valid = torch.tensor([[False, True, True]])
    assert topk_mask(scores, torch.tensor([2]), valid).tolist() == [[False, True, True]]


@pytest.mark.parametrize("bad", [0.0, 1.5, float("nan"), True, "0.5"])
def test_select_validates_keep_ratio(bad):
    with pytest.raises(ValueError, match="keep_ratio"):
        TopKStrategy().select(torch.zeros(1, 4), bad)


def test_select_rejects_bad_shapes():
    with pytest.raises(ValueError, match="scores"):
        TopKStrategy().select(torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match="valid"):
        TopKStrategy().select(torch.zeros(1, 4), 0.5, torch.ones(1, 3, dtype=torch.bool))


@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.25, 0.3, 0.7, 1 / 3, 0.123456, 1.0])
def test_kept_counts_on_the_device_equal_kept_count(ratio):
    from vissparse.strategies.topk import kept_counts

    n = torch.arange(0, 3000)
    assert kept_counts(ratio, n).tolist() == [kept_count(ratio, int(i)) for i in n]


def test_select_is_sync_free():
    from vissparse.host_sync import no_host_sync

    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.4, 0.2, 0.8, 0.0]])
    valid = torch.tensor([[True, True, True, True], [True, True, False, False]])
    with no_host_sync():
        keep = TopKStrategy().select(scores, 0.5, valid)
    assert keep.tolist() == [[False, True, True, False], [True, False, False, False]]
