"""Drop or mask mode on an embedded batch, given its sequence keep mask: fixed shapes.

With the packed length known on the host (:mod:`vissparse.hf.host_facts`), nothing here
waits for the device.
"""

from __future__ import annotations

from torch import Tensor

from vissparse.adapters import Embedded
from vissparse.config import PruningConfig
from vissparse.pruning import compact_positions, drop_tokens, mask_tokens, pack_left


def apply_mode(
    config: PruningConfig, emb: Embedded, inputs_embeds: Tensor, keep_seq: Tensor,
    types: Tensor | None, length: int | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, list[Tensor]]:  # fmt: skip
    """``(embeds, attention_mask, position_ids, token_type_ids, layer_additions)``.

    Drop mode packs every per-token input to ``length`` columns (``None``: read from the
    device); mask mode zeroes the pruned tokens' attention and keeps the rest.

    Example:
        >>> import torch
        >>> emb = Embedded(torch.ones(1, 4, 2), torch.ones(1, 4, dtype=torch.long),
        ...                torch.arange(4)[None], [0], [torch.tensor([1, 2])], [])
        >>> keep = torch.tensor([[True, False, True, True]])
        >>> out = apply_mode(PruningConfig(mode="drop"), emb, emb.inputs_embeds, keep, None, 3)
        >>> out[2].tolist(), out[1].tolist()
        ([[0, 2, 3]], [[1, 1, 1]])
    """
    mask_in, positions_in = emb.attention_mask, emb.position_ids
    if config.mode != "drop":
        return inputs_embeds, mask_tokens(mask_in, keep_seq), positions_in, types, \
            emb.layer_additions  # fmt: skip
    embeds, positions, mask = drop_tokens(inputs_embeds, positions_in, mask_in, keep_seq, length)
    if config.positions == "compact":  # vLLM's numbering of 1-D positions
        positions = compact_positions(mask)
    if types is not None:
        types = pack_left(types, mask_in, keep_seq, length=length)
    additions = [drop_tokens(a, positions_in, mask_in, keep_seq, length)[0]
                 for a in emb.layer_additions]  # fmt: skip
    return embeds, mask, positions, types, additions
