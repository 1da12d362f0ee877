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
from vissparse.pruning import kept_ids
from vissparse.testing import FAMILY_NAMES, random_image, tiny_model

PROMPTS = ["What is it?", "Is there a red car next to the tall tree here?"]  # ragged rows

# methods that read values back (greedy loops, per-row budgets from the data, hashing)
NOT_SYNC_FREE = {
    "pool": "per-row budgets read back, boxes built on the host",
    "visionzip": "per-row budgets read back, merge groups built row by row",
    "prumerge+": "IQR outliers per row, counted on the host",
    "dart": "per-row budgets read back, pivots picked on the host",
    "cdpruner": "greedy DPP loop on the host's copy of the tokens",
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
        if mode == "drop":  # the ids generate gets beside the embeddings (prune's last step)
            ids = kept_ids(emb.inputs_embeds.new_zeros(emb.attention_mask.shape).long(),
                           emb.attention_mask, emb.image_sample, emb.image_positions,
                           batch.image_keep, length=batch.inputs_embeds.shape[1])  # fmt: skip
            assert ids.shape == batch.attention_mask.shape
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


SYNC_FREE = ["cosine", "cosine-least", "cosine-max", "divprune", "mmtok", "random", "scope",
             "uniform", "vispruner"]  # fmt: skip
ZOO = [*SYNC_FREE, *sorted(NOT_SYNC_FREE)]


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

    def reading(self: Any, ctx: Any) -> Any:
        scores = torch.zeros(ctx.image_tokens.shape[:2])
        return scores + float(ctx.query.sum())  # a host read

    monkeypatch.setattr(CosineScorer, "score_context", reading)
    with pytest.raises(HostSyncError):
        _run_guarded("llava", "cosine", "drop")


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_sync_free_on_cuda(family: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    _run_guarded(family, "cosine", "drop", device="cuda")


def test_drop_to_the_host_length_equals_the_read_back_length() -> None:
    """Packing by a stable sort to a given length equals packing to the measured one."""
    from vissparse.pruning import drop_tokens, packing

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        b, n = 3, 9
        mask = torch.ones(b, n, dtype=torch.long)
        for row in range(b):  # ragged rows, padded on the left
            mask[row, : int(torch.randint(0, 4, (1,), generator=gen))] = 0
        keep = torch.rand(b, n, generator=gen) > 0.4
        emb, pos = torch.randn(b, n, 4, generator=gen), torch.arange(n).expand(3, b, n)
        length = int((mask.bool() & keep).sum(dim=1).max())
        read_back = drop_tokens(emb, pos, mask, keep)
        with no_host_sync():
            given = drop_tokens(emb, pos, mask, keep, length)
        for a, c in zip(read_back, given, strict=True):
            assert torch.equal(a, c)
    with pytest.raises(ValueError, match="`length`"):
        packing(mask, keep, n + 1)


def test_a_method_breaking_its_exact_budget_is_stopped() -> None:
    """A method that says it keeps top-k but keeps more is not cut silently in drop mode."""
    from vissparse.strategies.base import TokenScorer
    from vissparse.strategies.context import Selection

    class KeepsAll(TokenScorer):
        name = "keeps-all"
        exact_budget = True

        def score(self, image_tokens: Any, query: Any, valid: Any = None) -> Any:
            return torch.zeros(image_tokens.shape[:2])

        def plan(self, ctx: Any, keep_ratio: float, strategy: Any) -> Selection:
            return Selection(ctx.budget_mask().clone())

    model, processor = tiny_model("llava", 0)
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25, scorer=KeepsAll()))
    inputs, prompt_mask, _, _ = pipe._encode([random_image(seed=1)], PROMPTS[:1])
    with pytest.raises(RuntimeError, match="exact_budget"):
        pipe.prune(inputs, prompt_mask)
