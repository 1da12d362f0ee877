"""Per-token tensors added to the outputs of the first decoder layers (model patching).

Qwen3-VL's DeepStack adds features from intermediate vision layers to the hidden states
after language-model layers ``0 .. n-1``, at the image tokens. HF does it only when the
model embeds the images itself; VisSparse feeds the pruned embeddings, so these hooks
add the features instead, on whatever sequence the layer runs on:

- the sequence the model was given (input-stage pruning: the additions were packed with
  the same keep mask as the embeddings, so a dropped token leaves nothing behind);
- the shorter one after an in-LLM stage dropped tokens (``columns`` gives each current
  column's original position, and the additions are gathered there).

Additions happen once per layer, in the prefill; decoding steps add nothing, as in HF.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from torch import Tensor

from vissparse.llm.masks import gather_tokens

# After an in-LLM drop: (index [B, L_cur] of original positions, valid [B, L_cur]); None
# while the layer runs on the sequence the model was given.
Columns = Callable[[], "tuple[Tensor, Tensor] | None"]


def _no_columns() -> None:
    return None


def current_additions(values: Tensor, columns: tuple[Tensor, Tensor] | None) -> Tensor:
    """``values`` ``[B, L, D]`` on the current columns (zero on padding columns).

    Example:
        >>> import torch
        >>> v = torch.arange(3.0).view(1, 3, 1)
        >>> cols = (torch.tensor([[0, 2]]), torch.tensor([[False, True]]))
        >>> current_additions(v, cols).flatten().tolist()
        [0.0, 2.0]
    """
    if columns is None:
        return values
    index, valid = columns
    return gather_tokens(values, index) * valid[..., None].to(values.dtype)


@contextmanager
def added_to_layers(
    layers: Sequence[Any], additions: Sequence[Tensor], columns: Columns = _no_columns
) -> Iterator[None]:
    """While the block runs, layer ``j``'s prefill output gets ``additions[j]`` added.

    ``additions[j]`` is ``[B, L, D]`` on the sequence the model is given (zero where
    nothing is added); rows expanded by beam search get their row's additions. A layer
    whose prefill runs on a sequence of another length than the additions (or the current
    columns) is an error, never a silent skip.
    """
    if len(additions) > len(layers):
        raise ValueError(
            f"{len(additions)} layer additions for a language model of {len(layers)} layers"
        )
    done = [False] * len(additions)

    def hook_for(j: int) -> Callable[..., Any]:
        def hook(module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
            if done[j]:
                return None
            done[j] = True
            hidden = output[0] if isinstance(output, tuple) else output
            add = current_additions(additions[j], columns())
            beams, rest = divmod(hidden.shape[0], max(add.shape[0], 1))
            if beams > 1 and rest == 0:  # beam search expands each row, as generate does
                add = add.repeat_interleave(beams, dim=0)
            if add.shape != hidden.shape:
                raise RuntimeError(
                    f"layer {j} ran on {tuple(hidden.shape)} hidden states but its additions "
                    f"are {tuple(add.shape)}; the pruned batch and the model call do not match"
                )
            hidden = hidden + add.to(hidden.device, hidden.dtype)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    with ExitStack() as stack:
        for j in range(len(additions)):
            handle = layers[j].register_forward_hook(hook_for(j), with_kwargs=True)
            stack.callback(handle.remove)
        yield
