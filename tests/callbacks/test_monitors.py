from types import SimpleNamespace as NS

import lightning as L
import pytest
import torch

from vissparse.callbacks import AccuracyDeltaMonitor, LatencyMonitor, SpeedupMonitor
from vissparse.lightning import BatchStats, VisSparseModule
from vissparse.records import BatchAnswers


def stats(latency, baseline, correct, baseline_correct):
    answers = BatchAnswers(["a"] * len(correct), ["a"] * len(correct), [[]] * len(correct),
                           [4] * len(correct), [1] * len(correct), latency, baseline)  # fmt: skip
    return BatchStats(answers, torch.tensor(correct), torch.tensor(baseline_correct))


def fake_trainer(sanity=False):
    return NS(sanity_checking=sanity, loggers=[], world_size=1)


def drive(monitor, batches, sanity=False):
    module = NS(device=torch.device("cpu"), last_batch=None)
    trainer = fake_trainer(sanity)
    monitor.on_validation_epoch_start(trainer, module)
    for s in batches:
        monitor.on_validation_batch_start(trainer, module, None, 0)
        module.last_batch = s
        monitor.on_validation_batch_end(trainer, module, None, None, 0)
    monitor.on_validation_epoch_end(trainer, module)
    return monitor


BATCHES = [stats(2.0, 8.0, [True, False], [True, True]), stats(4.0, 8.0, [True], [True])]


def test_monitors_compute_from_batches():
    assert drive(SpeedupMonitor(), BATCHES).last_values == {"speedup": pytest.approx(16 / 6)}
    delta = drive(AccuracyDeltaMonitor(), BATCHES).last_values
    assert delta == {"accuracy": pytest.approx(2 / 3), "baseline_accuracy": 1.0,
                     "accuracy_delta": pytest.approx(1 / 3)}  # fmt: skip
    latency = drive(LatencyMonitor(percentiles=(50,)), BATCHES).last_values
    assert latency == {"latency_ms_mean": 3.0, "latency_ms_p50": 3.0}


def test_sanity_check_is_skipped():
    monitor = drive(SpeedupMonitor(), BATCHES, sanity=True)
    assert monitor.batches_seen == 0 and monitor.last_values == {}
    assert monitor.speedup.update_count == 0


def test_state_dict_round_trip():
    first = drive(LatencyMonitor(), BATCHES[:1])
    state = first.state_dict()
    second = LatencyMonitor()
    second.load_state_dict(state)
    assert second.batches_seen == 1
    assert float(second.latency.compute()["mean"]) == 2.0
    speed = drive(SpeedupMonitor(), BATCHES)
    restored = SpeedupMonitor()
    restored.load_state_dict(speed.state_dict())
    assert float(restored.speedup.compute()) == pytest.approx(16 / 6)


def test_argument_and_module_checks():
    with pytest.raises(ValueError, match="log_every_n_batches"):
        LatencyMonitor(log_every_n_batches=0)
    with pytest.raises(TypeError, match="needs a VisSparseModule"):
        SpeedupMonitor().setup(fake_trainer(), L.LightningModule(), "validate")
    module = VisSparseModule(base_model="mock", mock=True, dim=32, n_tokens=64)
    SpeedupMonitor().setup(fake_trainer(), module, "validate")
    with pytest.raises(ValueError, match="measure_baseline"):
        drive(SpeedupMonitor(), [stats(1.0, None, [True], [True])])


def test_restored_state_survives_the_next_epoch_and_keys_differ_by_prefix():
    saved = drive(SpeedupMonitor(), BATCHES[:1]).state_dict()
    restored = SpeedupMonitor()
    restored.load_state_dict(saved)
    drive(restored, BATCHES[1:])  # one more batch in the following epoch
    assert restored.last_values["speedup"] == pytest.approx(16 / 6)
    empty = LatencyMonitor()
    empty.load_state_dict(LatencyMonitor().state_dict())
    assert empty.latency.update_count == 0
    assert LatencyMonitor(prefix="a").state_key != LatencyMonitor(prefix="b").state_key
