"""Per-sample pruning records of the lmms-eval plugin: kept tokens, keep ratio, latency.

One row per answered request, from the ``GenerationDetails`` of the batch call that
answered it (:meth:`vissparse.hf.pipeline.HFPipeline.generate` with
``return_details=True``). Kept tokens are counted as ``vissparse testbed eval`` counts
them: the kept image tokens, or with ``stage="llm"`` the image tokens a layer sees on
average over the language model's layers.

Example:
    >>> import torch
    >>> from types import SimpleNamespace as NS
    >>> details = NS(keep_mask=[[torch.tensor([True, False, False, False])]],
    ...              metrics={"latency_ms": 12.0}, text=["red"])
    >>> row = sample_rows(details, [("vissparse_testbed", 3)])[0]
    >>> row["kept_tokens"], row["image_tokens"], row["effective_keep_ratio"]
    (1.0, 4, 0.25)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def sample_rows(details: Any, keys: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{task, doc_id, image_tokens, kept_tokens, effective_keep_ratio, ...}``.

    ``keys`` holds each prompt's ``(task, doc_id)`` in batch order. ``latency_ms`` is the
    wall time of the batch call that answered the prompt (prefill and decode of the whole
    batch), ``batch_size`` its number of prompts.
    """
    masks = details.keep_mask
    per_layer = details.metrics.get("image_tokens_per_layer")
    latency = float(details.metrics["latency_ms"])
    texts = details.text
    full = details.metrics.get("downsampled_from")  # scorer="downsample": full-size counts
    rows = []
    for i, (task, doc_id) in enumerate(keys):
        total = int(full[i]) if full else int(sum(m.numel() for m in masks[i]))
        if per_layer is not None:  # inside the LM: the average over layers is the count
            kept = float(sum(per_layer[i]) / len(per_layer[i]))
        else:
            kept = float(sum(int(m.sum()) for m in masks[i]))
        rows.append({
            "task": task, "doc_id": doc_id, "image_tokens": total, "kept_tokens": kept,
            "effective_keep_ratio": kept / total if total else None,
            "latency_ms": latency, "batch_size": len(keys), "text": texts[i],
        })  # fmt: skip
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over ``rows``: samples, image and kept tokens, keep ratio, mean latency.

    Example:
        >>> summary([{"image_tokens": 4, "kept_tokens": 1.0, "latency_ms": 10.0,
        ...           "batch_size": 2}] * 2)
        {'samples': 2, 'image_tokens': 8, 'kept_tokens': 2.0, 'effective_keep_ratio': 0.25, 'latency_ms_per_sample': 5.0}
    """  # noqa: E501
    image = sum(r["image_tokens"] for r in rows)
    kept = sum(r["kept_tokens"] for r in rows)
    per_sample = [r["latency_ms"] / r["batch_size"] for r in rows]
    return {
        "samples": len(rows), "image_tokens": image, "kept_tokens": kept,
        "effective_keep_ratio": kept / image if image else None,
        "latency_ms_per_sample": sum(per_sample) / len(per_sample) if per_sample else None,
    }  # fmt: skip


def append_rows(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """Append ``rows`` to the JSONL file ``path`` (its folder is created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
