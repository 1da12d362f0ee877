"""Catch the host waiting on the device: a guard for the pruning path.

On a GPU, any ``.item()``, ``.tolist()``, ``int(t)``, ``if t:``, ``.nonzero()`` or
boolean-mask indexing of a device tensor makes the host wait until the device has
finished everything queued before it: the pipeline of kernels drains and the GPU idles
while Python catches up. :func:`no_host_sync` makes those calls raise inside a block, on
any device, so a CPU test can prove a code path free of them. On CUDA the same check is
``torch.cuda.set_sync_debug_mode("error")``, which :func:`no_host_sync` also sets.

Host-side facts (token counts, spans) that follow from the processor's output are plain
Python values computed before the block; inside it, no tensor goes back to the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = [
    "HostSyncError", "host_copy", "keep_host_copy", "no_host_sync", "to_device", "values_on_host",
]  # fmt: skip

# Tensor methods whose result lives on the host or whose output shape depends on values.
_METHODS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__",
            "nonzero", "argwhere", "unique", "unique_consecutive", "masked_select")  # fmt: skip
_FUNCTIONS = ("nonzero", "argwhere", "unique", "unique_consecutive", "masked_select")


class HostSyncError(RuntimeError):
    """A call inside :func:`no_host_sync` needs the device's values on the host."""


_INHERITED = object()  # marks a patched name the class did not define itself
_active = [0]  # nesting depth of no_host_sync blocks


def values_on_host(tensor: torch.Tensor) -> bool:
    """Whether reading ``tensor``'s values costs no wait: on the CPU, outside a guard.

    Checks of values (NaN scores, empty prompts) run where they are free and are left
    out on an accelerator; inside :func:`no_host_sync`, which stands in for a device,
    they are left out too.

    Example:
        >>> values_on_host(torch.zeros(1))
        True
        >>> with no_host_sync():
        ...     values_on_host(torch.zeros(1))
        False
    """
    return tensor.device.type == "cpu" and not _active[0]


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` (host index or mask) on ``device``, copied without waiting for it.

    A blocking host-to-device copy synchronises the CUDA stream; for CUDA the host
    tensor is put in pinned memory (PyTorch's caching host allocator keeps it alive
    until the copy is done) and copied asynchronously.

    Example:
        >>> to_device(torch.tensor([1, 2]), torch.device("cpu")).tolist()
        [1, 2]
    """
    if tensor.device == device:
        return tensor
    if tensor.device.type == "cpu" and device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def keep_host_copy(tensor: torch.Tensor, host: torch.Tensor) -> torch.Tensor:
    """Remember ``host``, the CPU tensor ``tensor`` was copied from; returns ``tensor``.

    The pipeline keeps the processor's ids and mask this way before moving them to the
    device, so spans and counts are read on the host (:func:`host_copy`) without waiting.

    Example:
        >>> ids = torch.tensor([1, 2])
        >>> host_copy(keep_host_copy(ids.clone(), ids)) is ids
        True
    """
    if host is not tensor:  # on the CPU ``.to`` returns the tensor itself: no self-cycle
        tensor._vissparse_host = host  # type: ignore[attr-defined]
    return tensor


def host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``'s values on the CPU: the kept copy, the tensor itself on the CPU, else a copy.

    The last case (a device tensor with no copy kept) waits for the device.

    Example:
        >>> t = torch.tensor([3])
        >>> host_copy(t) is t
        True
    """
    kept = getattr(tensor, "_vissparse_host", None)
    if isinstance(kept, torch.Tensor) and kept.shape == tensor.shape:
        return kept
    return tensor if tensor.device.type == "cpu" else tensor.cpu()


def _refuse(name: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise HostSyncError(
            f"`{name}` inside a no-host-sync block: the host would wait for the device"
        )

    return refuse


def _check_index(index: Any) -> None:
    parts = index if isinstance(index, tuple) else (index,)
    for part in parts:
        if isinstance(part, torch.Tensor) and part.dtype == torch.bool and part.dim() > 0:
            raise HostSyncError(
                "boolean-mask indexing inside a no-host-sync block: its size depends on "
                "the mask's values"
            )


class _IndexGuard(TorchFunctionMode):
    """Refuses boolean-mask indexing and assignment, as a mode.

    Patching ``__getitem__`` on the class would leave CPython's inherited indexing slots
    changed after the block.
    """

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        if func is torch.Tensor.__getitem__ or func is torch.Tensor.__setitem__:
            _check_index(args[1])
        return func(*args, **(kwargs or {}))


def _guarded_repeat(original: Callable[..., Any]) -> Callable[..., Any]:
    def repeat_interleave(inp: Any, repeats: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None:
            raise HostSyncError(
                "`repeat_interleave` with tensor repeats and no `output_size` inside a "
                "no-host-sync block: its size depends on the repeats' values"
            )
        return original(inp, repeats, *args, **kwargs)

    return repeat_interleave


def _guarded_where(original: Callable[..., Any]) -> Callable[..., Any]:
    def where(condition: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs:
            raise HostSyncError("`torch.where(condition)` inside a no-host-sync block")
        return original(condition, *args, **kwargs)

    return where


@contextmanager
def no_host_sync() -> Iterator[None]:
    """Inside the block, a call that would make the host wait for the device raises.

    Covers ``Tensor.item/tolist/numpy/cpu``, ``bool()/int()/float()`` and index use of
    a tensor (``if t:``, ``range(t)``), ``nonzero``/``argwhere``/``unique``/
    ``masked_select``/one-argument ``torch.where`` and ``repeat_interleave`` without
    ``output_size`` (data-dependent output sizes), and boolean-mask indexing or
    assignment; on CUDA, also every synchronising call the CUDA runtime reports (blocking
    copies included). It checks the Python-level calls, on any device, so CPU tests can
    prove a path free of them; an accelerator's own waits (a blocking host-to-device
    copy) show only on CUDA. Not thread-safe: it patches ``torch.Tensor`` for the
    duration of the block.

    Example:
        >>> x = torch.arange(4.0)
        >>> with no_host_sync():
        ...     y = (x * 2).topk(2).indices  # fixed output size: fine
        >>> try:
        ...     with no_host_sync():
        ...         n = int(x.sum())
        ... except HostSyncError as err:
        ...     print(err)
        `__int__` inside a no-host-sync block: the host would wait for the device
    """
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, value: Any) -> None:
        if hasattr(owner, name):
            # an inherited attribute (a C slot) is deleted again, not copied onto the class
            saved.append((owner, name, vars(owner).get(name, _INHERITED)))
            setattr(owner, name, value)

    entered = False
    cuda = torch.cuda.is_available()
    previous = torch.cuda.get_sync_debug_mode() if cuda else None
    try:
        for name in _METHODS:
            patch(torch.Tensor, name, _refuse(name))
        for name in _FUNCTIONS:
            patch(torch, name, _refuse(name))
        patch(torch, "where", _guarded_where(torch.where))
        for owner in (torch, torch.Tensor):
            patch(owner, "repeat_interleave", _guarded_repeat(owner.repeat_interleave))
        if cuda:
            torch.cuda.set_sync_debug_mode("error")
        _active[0] += 1
        entered = True
        with _IndexGuard():
            yield
    finally:
        if entered:
            _active[0] -= 1
        for owner, name, value in reversed(saved):
            if value is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, value)
        if cuda and previous is not None:
            torch.cuda.set_sync_debug_mode(previous)
