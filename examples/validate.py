"""Evaluate a pruning setting with Lightning's ``trainer.validate``.

Mock mode (default, any CPU):
    python examples/validate.py --keep-ratio 0.1 --n-samples 64

A local HuggingFace model on your own JSONL data ({"image", "question", "answer"} lines):
    python examples/validate.py --model ./llava-1.5-7b-hf --data vqa.jsonl --keep-ratio 0.25

Several processes (CPU, gloo): add ``--devices 2 --strategy ddp``. Results (rank 0) go to
``--json`` if given, and the monitors' values to ``--log-dir`` (CSV).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from vissparse.callbacks import AccuracyDeltaMonitor, LatencyMonitor, SpeedupMonitor
from vissparse.data import VQADataModule, collate_vqa
from vissparse.lightning import VisSparseModule


class SeenIndices(Callback):
    """Records which sample indices each process counted (to check none is repeated)."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if pl_module.last_batch is not None:  # None: the batch held only padding repeats
            self.indices.extend(pl_module.last_batch.index.tolist())

    def gathered(self, trainer: L.Trainer) -> list[int]:
        if trainer.world_size == 1:
            return list(self.indices)
        objects: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(objects, self.indices)
        return [i for part in objects for i in part]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="local model directory or hub id (default: mock)")
    parser.add_argument("--data", help="JSONL file of VQA samples (required with --model)")
    parser.add_argument("--keep-ratio", type=float, default=0.1)
    parser.add_argument("--scorer", default="cosine")
    parser.add_argument("--n-samples", type=int, default=64, help="mock samples")
    parser.add_argument("--dim", type=int, default=128, help="mock embedding width")
    parser.add_argument("--n-tokens", type=int, default=1024, help="mock image tokens")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--plain-loader",
        action="store_true",
        help="mock data in a plain DataLoader, not VQADataModule",
    )
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--log-dir", default="lightning_logs_vissparse")
    parser.add_argument("--json", help="write the results here (rank 0)")
    args = parser.parse_args()

    if args.model:
        if not args.data:
            parser.error("--model needs --data")
        module = VisSparseModule(
            base_model=args.model,
            keep_ratio=args.keep_ratio,
            scorer=args.scorer,
            generate_kwargs={"max_new_tokens": args.max_new_tokens},
        )
        data = VQADataModule(args.data, batch_size=args.batch_size)
    else:
        module = VisSparseModule(
            base_model="mock",
            mock=True,
            keep_ratio=args.keep_ratio,
            scorer=args.scorer,
            dim=args.dim,
            n_tokens=args.n_tokens,
        )
        data = VQADataModule.mock(
            args.n_samples, batch_size=args.batch_size, dim=args.dim, n_tokens=args.n_tokens
        )
        if args.plain_loader:  # Lightning adds a DistributedSampler that pads by repeats
            data = DataLoader(data.dataset, batch_size=args.batch_size, collate_fn=collate_vqa)
    monitors = [LatencyMonitor(), SpeedupMonitor(), AccuracyDeltaMonitor()]
    seen = SeenIndices()
    trainer = L.Trainer(
        accelerator="cpu" if args.devices > 1 or not torch.cuda.is_available() else "auto",
        devices=args.devices,
        strategy=args.strategy,
        logger=CSVLogger(args.log_dir),
        callbacks=[*monitors, seen],
        enable_progress_bar=True,
        enable_model_summary=False,
    )
    if isinstance(data, DataLoader):
        metrics = trainer.validate(module, dataloaders=data)[0]
    else:
        metrics = trainer.validate(module, datamodule=data)[0]
    indices = seen.gathered(trainer)
    if trainer.is_global_zero:
        for monitor in monitors:
            metrics.update({f"monitor/{k}": v for k, v in monitor.last_values.items()})
        result = {"world_size": trainer.world_size, "metrics": metrics, "indices": sorted(indices)}
        print(json.dumps(result["metrics"], indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # a clean shutdown: gloo's threads abort the process if it exits with them alive
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
