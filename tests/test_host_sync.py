"""The no-host-sync guard: each call that would make the host wait raises inside it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from vissparse.host_sync import HostSyncError, no_host_sync, values_on_host

x = torch.arange(6.0).view(2, 3)
mask = torch.tensor([[True, False, True], [False, True, True]])

REFUSED: dict[str, Callable[[], Any]] = {
    "item": lambda: x.sum().item(),
    "tolist": lambda: x.tolist(),
    "numpy": lambda: x.numpy(),
    "cpu": lambda: x.cpu(),
    "bool": lambda: bool(x.sum()),
    "if": lambda: 1 if (x > 0).any() else 0,
    "int": lambda: int(x.sum()),
    "float": lambda: float(x.sum()),
    "index": lambda: range(torch.tensor(3)),
    "nonzero": lambda: mask.nonzero(),
    "torch.nonzero": lambda: torch.nonzero(mask),
    "argwhere": lambda: torch.argwhere(mask),
    "unique": lambda: torch.unique(x),
    "masked_select": lambda: x.masked_select(mask),
    "where1": lambda: torch.where(mask),
    "mask index": lambda: x[mask],
    "row mask index": lambda: x[0, mask[0]],
    "mask assign": lambda: x.clone().__setitem__(mask, 0.0),
    "repeat_interleave": lambda: torch.repeat_interleave(x[0], torch.tensor([1, 2, 0])),
}

ALLOWED: dict[str, Callable[[], Any]] = {
    "topk": lambda: x.topk(2, dim=1).indices,
    "sort": lambda: torch.sort(mask.to(torch.int8), dim=1, stable=True),
    "where3": lambda: torch.where(mask, x, 0.0),
    "gather": lambda: x.gather(1, torch.tensor([[0], [2]])),
    "long index": lambda: x[torch.tensor([1, 0]), torch.tensor([2, 2])],
    "slice": lambda: x[:, 1:],
    "repeat_interleave int": lambda: x.repeat_interleave(2, dim=0),
    "repeat_interleave sized": lambda: torch.repeat_interleave(
        x[0], torch.tensor([1, 2, 0]), output_size=3
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_inside_and_restored_after(name: str) -> None:
    with pytest.raises(HostSyncError), no_host_sync():
        REFUSED[name]()
    REFUSED[name]()  # the patches are gone after the block


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_fixed_shape_ops_allowed(name: str) -> None:
    with no_host_sync():
        ALLOWED[name]()


def test_nested_blocks_and_values_on_host() -> None:
    assert values_on_host(x)
    with no_host_sync():
        with no_host_sync():
            assert not values_on_host(x)
        assert not values_on_host(x)
        with pytest.raises(HostSyncError):
            x.tolist()
    assert values_on_host(x)
    assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_restored_after_an_error_inside() -> None:
    with pytest.raises(ValueError, match="boom"), no_host_sync():
        raise ValueError("boom")
    assert bool(mask.any()) and values_on_host(x)


@pytest.mark.gpu
def test_cuda_sync_is_refused() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    y = torch.arange(4.0, device="cuda")
    with pytest.raises(RuntimeError), no_host_sync():
        y.sum().item()
    with pytest.raises(RuntimeError), no_host_sync():
        y.to("cpu")


def test_tensor_class_left_exactly_as_found() -> None:
    """Inherited C slots are deleted again, not copied onto the class (indexing changes)."""
    before = dict(vars(torch.Tensor))
    with no_host_sync():
        pass
    after = vars(torch.Tensor)
    assert set(after) == set(before) and all(after[k] is v for k, v in before.items())


def test_host_copy_kept_beside_a_moved_tensor() -> None:
    from vissparse.host_sync import host_copy, keep_host_copy

    host = torch.tensor([[1, 2, 3]])
    moved = keep_host_copy(host.clone(), host)  # stands in for host.to(device)
    assert host_copy(moved) is host
    same = keep_host_copy(host, host)  # a CPU model: .to() returned the tensor itself
    assert host_copy(same) is host and not hasattr(host, "_vissparse_host")
    with no_host_sync():  # reading the kept copy's shape needs no device value
        assert host_copy(moved).shape == (1, 3)
