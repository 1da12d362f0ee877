"""trainer.validate / trainer.predict end to end, mock and tiny HF, with the monitors."""

import csv
import json

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from vissparse import TokenScorer, VisSparse
from vissparse.callbacks import AccuracyDeltaMonitor, LatencyMonitor, SpeedupMonitor
from vissparse.data import VQADataModule
from vissparse.lightning import VisSparseModule
from vissparse.testing import random_image, tiny_model


class Recorder(Callback):
    """Keeps every batch's measurements, for a direct computation to compare with."""

    def __init__(self):
        self.batches = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl=0):
        self.batches.append(pl_module.last_batch)


def trainer_for(tmp_path, callbacks):
    return L.Trainer(accelerator="cpu", devices=1, logger=CSVLogger(tmp_path),
                     callbacks=callbacks, enable_progress_bar=False,
                     enable_model_summary=False)  # fmt: skip


def read_csv(logger_dir):
    [path] = list(logger_dir.rglob("metrics.csv"))
    with open(path) as f:
        return list(csv.DictReader(f))


def check_against_recorder(metrics, monitors, recorder, rows):
    correct = torch.cat([b.correct for b in recorder.batches]).float()
    base_correct = torch.cat([b.baseline_correct for b in recorder.batches]).float()
    lat = torch.tensor([b.answers.latency_ms for b in recorder.batches], dtype=torch.float64)
    base = torch.tensor(
        [b.answers.baseline_latency_ms for b in recorder.batches], dtype=torch.float64
    )
    latency, speed, delta = monitors
    assert metrics["val/accuracy"] == pytest.approx(float(correct.mean()))
    assert metrics["val/baseline_accuracy"] == pytest.approx(float(base_correct.mean()))
    assert metrics["val/accuracy_delta"] == pytest.approx(
        float(base_correct.mean() - correct.mean())
    )
    assert metrics["val/speedup"] == pytest.approx(float(base.sum() / lat.sum()))
    assert (
        metrics["val/latency_ms_p50"] == pytest.approx(float(lat.median()), rel=1e-5)
        or len(lat) % 2 == 0
    )
    assert latency.last_values["latency_ms_mean"] == pytest.approx(float(lat.mean()))
    assert latency.last_values["latency_ms_p90"] == pytest.approx(float(torch.quantile(lat, 0.9)))
    assert speed.last_values["speedup"] == pytest.approx(float(base.sum() / lat.sum()))
    assert delta.last_values["accuracy"] == pytest.approx(float(correct.mean()))
    assert delta.last_values["accuracy_delta"] == pytest.approx(
        float(base_correct.mean() - correct.mean())
    )
    step_values = [
        float(r["monitor/val/latency_ms_step"])
        for r in rows
        if r.get("monitor/val/latency_ms_step")
    ]
    assert step_values == pytest.approx(lat.tolist())
    epoch = [r for r in rows if r.get("monitor/val/speedup")]
    assert float(epoch[-1]["monitor/val/speedup"]) == pytest.approx(speed.last_values["speedup"])


def test_validate_mock_with_monitors(tmp_path):
    module = VisSparseModule(base_model="mock", mock=True, keep_ratio=0.1, dim=64, n_tokens=256)
    data = VQADataModule.mock(13, batch_size=4, dim=64, n_tokens=256)
    monitors = [LatencyMonitor(), SpeedupMonitor(), AccuracyDeltaMonitor()]
    recorder = Recorder()
    metrics = trainer_for(tmp_path, [*monitors, recorder]).validate(module, datamodule=data)[0]
    assert sum(b.answers.n for b in recorder.batches) == 13
    check_against_recorder(metrics, monitors, recorder, read_csv(tmp_path))


def test_predict_mock_returns_per_sample_rows(tmp_path):
    module = VisSparseModule(base_model="mock", mock=True, keep_ratio=0.25, dim=64, n_tokens=256)
    data = VQADataModule.mock(5, batch_size=2, dim=64, n_tokens=256)
    monitors = [LatencyMonitor(), SpeedupMonitor(), AccuracyDeltaMonitor()]
    batches = trainer_for(tmp_path, monitors).predict(module, datamodule=data)
    rows = [row for batch in batches for row in batch]
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]
    for row in rows:
        assert row["keep_mask"][0].shape == (256,) and row["n_kept"] == 64
        assert {"answer", "correct", "baseline_answer", "speedup", "latency_ms"} <= row.keys()
    assert monitors[0].last_values["latency_ms_mean"] > 0
    assert any(r.get("monitor/predict/speedup") for r in read_csv(tmp_path))


def test_a_loader_without_collate_vqa_names_it(tmp_path):
    from torch.utils.data import DataLoader

    from vissparse.data import MockVQADataset

    module = VisSparseModule(base_model="mock", mock=True, keep_ratio=0.25, dim=64, n_tokens=256)
    dataset = MockVQADataset(n_samples=3, dim=64, n_tokens=256)
    loader = DataLoader(dataset, batch_size=2, collate_fn=lambda items: {"image": items})
    with pytest.raises(TypeError, match="collate_fn=collate_vqa"):
        trainer_for(tmp_path, []).validate(module, dataloaders=loader)


def pil_items(n):
    """VQA items with PIL images, as a user's own dataset yields them."""
    return [{"image": random_image(seed=i), "question": "q?", "answer": "a", "index": i}
            for i in range(n)]  # fmt: skip


@pytest.mark.parametrize("stage", ["validate", "predict"])
def test_a_loader_without_collate_fn_gets_the_module_hint(tmp_path, stage):
    from torch.utils.data import DataLoader

    module = VisSparseModule(base_model="mock", mock=True, keep_ratio=0.25, dim=64, n_tokens=256)
    loader = DataLoader(pil_items(3), batch_size=2)  # torch's default_collate: no PIL images
    with pytest.raises(TypeError, match=r"^the .* DataLoader has no `collate_fn`") as err:
        getattr(trainer_for(tmp_path, []), stage)(module, dataloaders=loader)
    assert "collate_fn=collate_vqa" in str(err.value) and "\n" not in str(err.value)
    assert module.last_batch is None  # refused before any batch was answered


def test_drop_last_that_skips_samples_is_refused(tmp_path):
    from torch.utils.data import DataLoader

    from vissparse.data import MockVQADataset, collate_vqa

    module = VisSparseModule(base_model="mock", mock=True, keep_ratio=0.25, dim=64, n_tokens=256)
    data = MockVQADataset(5, dim=64, n_tokens=256)
    loader = DataLoader(data, batch_size=2, drop_last=True, collate_fn=collate_vqa)
    with pytest.raises(ValueError, match=r"^`drop_last=True` .* skip 1 of its 5 samples") as err:
        trainer_for(tmp_path, []).validate(module, dataloaders=loader)
    assert "pass `drop_last=False`" in str(err.value) and "\n" not in str(err.value)
    assert module.last_batch is None
    # predict: Lightning rebuilds the loader without drop_last, so every sample gets a row
    rows = trainer_for(tmp_path, []).predict(module, dataloaders=loader)
    assert [r["index"] for b in rows for r in b] == [0, 1, 2, 3, 4]


def test_drop_last_that_skips_nothing_counts_every_sample(tmp_path):
    from torch.utils.data import DataLoader

    from vissparse.data import MockVQADataset, collate_vqa

    module = VisSparseModule(base_model="mock", mock=True, keep_ratio=0.25, dim=64, n_tokens=256)
    data = MockVQADataset(4, dim=64, n_tokens=256)
    loader = DataLoader(data, batch_size=2, drop_last=True, collate_fn=collate_vqa)
    recorder = Recorder()
    trainer_for(tmp_path, [recorder]).validate(module, dataloaders=loader)
    assert sum(b.answers.n for b in recorder.batches) == 4


class FirstTokensScorer(TokenScorer):
    """Keeps the first tokens of each image; counts its calls."""

    def __init__(self):
        self.calls = 0

    def score(self, image_tokens, query, valid=None):
        self.calls += 1
        n = image_tokens.shape[1]
        return (-torch.arange(n, dtype=torch.float32)).expand(image_tokens.shape[0], n).clone()


def test_custom_scorer_plugs_into_the_module(tmp_path):
    scorer = FirstTokensScorer()
    module = VisSparseModule(base_model="mock", mock=True, keep_ratio=0.25, scorer=scorer,
                             dim=64, n_tokens=256)  # fmt: skip
    rows = trainer_for(tmp_path, []).predict(module, datamodule=VQADataModule.mock(
        3, batch_size=3, dim=64, n_tokens=256))[0]  # fmt: skip
    assert scorer.calls >= 3
    expected = torch.zeros(256, dtype=torch.bool)
    expected[:64] = True
    assert all(torch.equal(r["keep_mask"][0], expected) for r in rows)


@pytest.mark.parametrize(
    "stage", [{}, {"stage": "llm", "layer": 1, "scorer": "fastv"}], ids=["input", "llm"]
)
def test_validate_tiny_hf_model(tmp_path, stage):
    model, processor = tiny_model("llava")
    vs = VisSparse(base_model=model, processor=processor, keep_ratio=0.25, **stage)
    gen = {"max_new_tokens": 3, "min_new_tokens": 3, "do_sample": False}
    images = [random_image(seed=i) for i in range(6)]
    questions = [f"What is shown in picture {i}?" for i in range(6)]
    answers = [
        vs.generate(image=img, prompt=q, **gen) for img, q in zip(images, questions, strict=True)
    ]
    lines = []
    for i, (img, q, a) in enumerate(zip(images, questions, answers, strict=True)):
        img.save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "question": q,
                                 "answer": a if i % 2 == 0 else "something else"}))  # fmt: skip
    (tmp_path / "qa.jsonl").write_text("\n".join(lines))
    module = VisSparseModule(vs, generate_kwargs=gen, match=lambda a, r: a == r)
    monitors = [LatencyMonitor(), SpeedupMonitor(), AccuracyDeltaMonitor()]
    recorder = Recorder()
    trainer = trainer_for(tmp_path / "logs", [*monitors, recorder])
    metrics = trainer.validate(
        module, datamodule=VQADataModule(tmp_path / "qa.jsonl", batch_size=4)
    )[0]
    assert metrics["val/accuracy"] == pytest.approx(0.5)  # half the references are its answers
    check_against_recorder(metrics, monitors, recorder, read_csv(tmp_path / "logs"))
    rows = trainer.predict(module, datamodule=VQADataModule(tmp_path / "qa.jsonl", batch_size=4))
    flat = [r for b in rows for r in b]
    assert [r["answer"] for r in flat] == answers
    assert all(r["keep_mask"][0].sum() == 4 for r in flat)


def test_module_argument_errors():
    vs = VisSparse(base_model="mock", mock=True, dim=32, n_tokens=64)
    with pytest.raises(TypeError, match="not both"):
        VisSparseModule(vs, keep_ratio=0.5)
    with pytest.raises(TypeError, match="`vissparse`"):
        VisSparseModule("mock")
    with pytest.raises(ValueError, match="generate_kwargs"):
        VisSparseModule(vs, generate_kwargs={"max_new_tokens": 2})


def test_top_level_import():
    from vissparse import VisSparseModule as TopLevel

    assert TopLevel is VisSparseModule


def test_plan_shards_counts_each_sample_once_or_refuses():
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
    from torch.utils.data import DataLoader, DistributedSampler

    from vissparse.data import MockVQADataset, collate_vqa
    from vissparse.lightning import plan_shards

    data = MockVQADataset(5, dim=16, n_tokens=64)

    def loader(sampler=None):
        return DataLoader(data, batch_size=2, sampler=sampler, collate_fn=collate_vqa)

    assert plan_shards(loader(), 1, "validate") is None
    padded = [list(DistributedSampler(data, num_replicas=2, rank=r, shuffle=False))
              for r in (0, 1)]  # fmt: skip
    assert padded == [[0, 2, 4], [1, 3, 0]]  # rank 1's last sample repeats sample 0
    shards = [plan_shards(loader(DistributedSampler(data, 2, r, shuffle=False)), 2, "validate")
              for r in (0, 1)]  # fmt: skip
    assert [s.real(0, 3) for s in shards] == [[True] * 3, [True, True, False]]
    unrepeated = UnrepeatedDistributedSampler(data, num_replicas=2, rank=0, shuffle=False)
    assert plan_shards(loader(unrepeated), 2, "validate") is None
    with pytest.raises(ValueError, match=r"not sharded by a DistributedSampler.*VQADataModule"):
        plan_shards(loader(), 2, "validate")
    with pytest.raises(ValueError, match="drop_last=True"):
        plan_shards(loader(DistributedSampler(data, 2, 0, drop_last=True)), 2, "validate")
    with pytest.raises(ValueError, match="one dataloader"):
        plan_shards([loader(), loader()], 2, "validate")
