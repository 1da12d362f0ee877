"""Layer schedules of in-LLM pruning and their token accounting."""

from __future__ import annotations

import pytest

from vissparse.config import PruningConfig
from vissparse.llm.schedule import LayerSchedule, average_tokens


def test_single_layer_and_geometric_stages() -> None:
    assert LayerSchedule.build(2, 0.1).stages == ((2, 0.1),)
    pdrop = LayerSchedule.build((8, 16, 24), 0.125)
    assert pdrop.stages == ((8, 0.5), (16, 0.25), (24, 0.125))
    assert pdrop.relative_ratios() == [0.5, 0.5, 0.5]


def test_explicit_schedule_must_end_at_keep_ratio() -> None:
    stages = [(1, 0.5), (3, 0.2)]
    assert LayerSchedule.build(schedule=stages, keep_ratio=0.2).stages == ((1, 0.5), (3, 0.2))
    with pytest.raises(ValueError, match="they must agree"):
        LayerSchedule.build(schedule=stages, keep_ratio=0.1)


@pytest.mark.parametrize(
    ("layer", "schedule", "match"),
    [(-1, None, "`layer` must be a layer index"), ((3, 2), None, "increasing layers"),
     (True, None, "`layer`"), ((), None, "non-empty"),
     (2, [(1, 0.1), (2, 0.2)], "non-increasing"), (2, [(1, 0.02)], "`schedule` must be"),
     (2, "pdrop", "list of \\(layer, keep_ratio\\)")],
)  # fmt: skip
def test_bad_schedules_name_the_argument(layer: object, schedule: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LayerSchedule.build(layer, 0.5 if schedule is None else 0.2, schedule)  # type: ignore[arg-type]


def test_tokens_per_layer_and_depth() -> None:
    schedule = LayerSchedule.build((1, 3), 0.25)
    assert schedule.tokens_per_layer(4, 100) == [100, 50, 50, 25]
    assert average_tokens(schedule.tokens_per_layer(4, 100)) == 56.25
    with pytest.raises(ValueError, match="beyond the language model's 3 layers"):
        schedule.tokens_per_layer(3, 100)


def test_config_checks_stage_and_scorer() -> None:
    with pytest.raises(ValueError, match="stage='llm'"):
        PruningConfig(scorer="fastv")
    with pytest.raises(ValueError, match="`layer` must be >= 1"):
        PruningConfig(scorer="pdrop", stage="llm", layer=0)
    with pytest.raises(ValueError, match="`schedule` applies to stage='llm' only"):
        PruningConfig(schedule=[(2, 0.1)])
    with pytest.raises(ValueError, match="`stage` must be one of"):
        PruningConfig(stage="decoder")  # type: ignore[arg-type]
    config = PruningConfig(keep_ratio=0.125, stage="llm", layer=[8, 16, 24], scorer="pdrop")
    assert config.layer_schedule().layers == (8, 16, 24)
