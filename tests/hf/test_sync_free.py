"""The input stage's pruning path never makes the host wait for the device (issue 33).

From the vision encoder's output to the language model's input (query, scoring,
selection, merge, drop, positions, masks), :func:`vissparse.host_sync.no_host_sync`
refuses every call that reads a device value on the host; on CUDA it also sets
``torch.cuda.set_sync_debug_mode("error")``. Methods that cannot run without reading
values back are listed here and say so in their docstrings ("Not sync-free").
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.host_sync import HostSyncError, no_host_sync
from vissparse.testing import FAMILY_NAMES, random_image, tiny_model

PROMPTS = ["What is it?", "Is there a red car next to the tall tree here?"]  # ragged rows

# methods that read values back (greedy loops, per-row budgets from the data, hashing)
NOT_SYNC_FREE = {
    "cosine-max": "per-row word masks select a ragged set of words",
    "pool": "per-row budgets and pooling windows read on the host",
    "visionzip": "per-row merge groups built on the host",
    "prumerge+": "IQR outliers per row, counted on the host",
    "dart": "per-row pivots picked on the host",
    "divprune": "greedy max-min selection loop",
    "cdpruner": "greedy DPP selection loop",
}


def _prepared(family: str, scorer: str, mode: str, device: str = "cpu") -> tuple[Any, ...]:
    model, processor = tiny_model(family, 0)
    model = model.to(device)
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25, scorer=scorer, mode=mode))
    images = [random_image(seed=1), random_image(seed=2)]
    inputs, prompt_mask, items, _ = pipe._encode(images, PROMPTS)
    emb, vision = pipe.embed(inputs)
    return pipe, emb, prompt_mask, pipe._keys(items), pipe.layouts(inputs, emb), vision


def _run_guarded(family: str, scorer: str, mode: str, device: str = "cpu") -> None:
    pipe, emb, prompt_mask, keys, layouts, vision = _prepared(family, scorer, mode, device)
    reference = pipe.select_and_apply(emb, prompt_mask, keys, layouts, vision)
    with no_host_sync():
        batch = pipe.select_and_apply(emb, prompt_mask, keys, layouts, vision)
    # the guarded path gives the same batch as the unguarded one
    torch.testing.assert_close(batch.inputs_embeds, reference.inputs_embeds)
    assert torch.equal(batch.attention_mask, reference.attention_mask)
    assert torch.equal(batch.position_ids, reference.position_ids)
    assert batch.n_kept == reference.n_kept and batch.kv_tokens == reference.kv_tokens
    kept = [int(k.sum()) for k in batch.image_keep]
    assert sum(kept) == sum(batch.n_kept) and sum(kept) < sum(batch.n_image_tokens)
    if mode == "drop":  # drop mode really shortens the rows, to the host-known length
        assert batch.inputs_embeds.shape[1] < emb.inputs_embeds.shape[1]
        assert batch.kv_tokens == batch.attention_mask.sum(dim=1).float().tolist()


def _modes(family: str) -> list[str]:
    return ["drop"] if family == "qwen3_5" else ["drop", "mask"]  # no mask mode on Qwen3.5


@pytest.mark.parametrize(
    ("family", "mode"), [(f, m) for f in FAMILY_NAMES for m in _modes(f)]
)  # fmt: skip
def test_default_path_is_sync_free_on_every_family(family: str, mode: str) -> None:
    _run_guarded(family, "cosine", mode)


ZOO = ["cosine", "cosine-least", "random", "uniform", *sorted(NOT_SYNC_FREE)]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("scorer", ZOO)
@pytest.mark.parametrize("mode", ["drop", "mask"])
def test_zoo_methods_sync_free_or_listed(family: str, scorer: str, mode: str) -> None:
    if scorer in NOT_SYNC_FREE:
        with pytest.raises(HostSyncError):
            _run_guarded(family, scorer, mode)
        pytest.xfail(f"not sync-free: {NOT_SYNC_FREE[scorer]}")
    _run_guarded(family, scorer, mode)


def test_the_guard_catches_a_sync_in_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a scorer that reads a value back is caught inside the path."""
    from vissparse.strategies.cosine import CosineScorer

    def reading(self: Any, image_tokens: Any, query: Any, valid: Any = None) -> Any:
        scores = torch.zeros(image_tokens.shape[:2])
        return scores + float(query.sum())  # a host read

    monkeypatch.setattr(CosineScorer, "score", reading)
    with pytest.raises(HostSyncError):
        _run_guarded("llava", "cosine", "drop")


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_sync_free_on_cuda(family: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    _run_guarded(family, "cosine", "drop", device="cuda")
