"""Layer additions (Qwen3-VL's DeepStack) on toy layers: pure hook behaviour."""

import pytest
import torch
from torch import nn

from vissparse.llm.additions import added_to_layers, current_additions


class Scale(nn.Module):
    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return 2 * hidden


def run(layers: nn.ModuleList, hidden: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        hidden = layer(hidden)
    return hidden


def test_additions_land_after_their_layer_in_prefill_only() -> None:
    layers = nn.ModuleList([Scale(), Scale(), Scale()])
    hidden = torch.ones(1, 3, 1)
    adds = [torch.tensor([[[1.0], [0.0], [2.0]]]), torch.tensor([[[0.0], [5.0], [0.0]]])]
    with added_to_layers(layers, adds):
        prefill = run(layers, hidden)
        decode = run(layers, hidden)  # a later call (a decoding step) gets nothing added
    # ((1 * 2 + a0) * 2 + a1) * 2
    assert prefill.flatten().tolist() == [12.0, 18.0, 16.0]
    assert decode.flatten().tolist() == [8.0, 8.0, 8.0]
    assert not any(layer._forward_hooks for layer in layers)


def test_after_a_drop_additions_follow_the_kept_columns() -> None:
    values = torch.arange(4.0).view(1, 4, 1) + 1  # positions 0..3 carry 1..4
    index, valid = torch.tensor([[0, 1, 3]]), torch.tensor([[False, True, True]])
    out = current_additions(values, (index, valid))
    assert out.flatten().tolist() == [0.0, 2.0, 4.0]  # padding column gets nothing
    layers = nn.ModuleList([Scale()])
    with added_to_layers(layers, [values], columns=lambda: (index, valid)):
        result = run(layers, torch.zeros(1, 3, 1))
    assert result.flatten().tolist() == [0.0, 2.0, 4.0]


def test_beam_rows_get_their_rows_additions() -> None:
    layers = nn.ModuleList([Scale()])
    adds = [torch.tensor([[[1.0]], [[3.0]]])]  # 2 rows
    with added_to_layers(layers, adds):
        out = run(layers, torch.zeros(4, 1, 1))  # 2 beams per row
    assert out.flatten().tolist() == [1.0, 1.0, 3.0, 3.0]


def test_a_length_mismatch_is_an_error_not_a_skip() -> None:
    layers = nn.ModuleList([Scale()])
    with added_to_layers(layers, [torch.zeros(1, 5, 1)]):
        with pytest.raises(RuntimeError, match=r"layer 0 ran on \(1, 3, 1\) hidden states"):
            run(layers, torch.zeros(1, 3, 1))
    with pytest.raises(ValueError, match="2 layer additions for a language model of 1 layers"):
        with added_to_layers(layers, [torch.zeros(1, 1, 1)] * 2):
            pass
