import math

import numpy as np
import pytest

from vissparse import PruningConfig
from vissparse.strategies import CosineScorer


@pytest.mark.parametrize(
    "bad",
    [float("nan"), math.inf, -math.inf, True, False, "0.5", None, 0.0, 0.049, 1.0001, -0.5, 2,
     [0.5]],
)  # fmt: skip
def test_keep_ratio_rejected_with_argument_value_and_range(bad):
    with pytest.raises(ValueError) as err:
        PruningConfig(keep_ratio=bad)
    message = str(err.value)
    assert "`keep_ratio`" in message and "[0.05, 1.0]" in message and repr(bad) in message


@pytest.mark.parametrize("good", [0.05, 0.1, 0.5, 1.0, 1, np.float64(0.3)])
def test_keep_ratio_accepted(good):
    config = PruningConfig(keep_ratio=good)
    assert config.keep_ratio == float(good) and isinstance(config.keep_ratio, float)


@pytest.mark.parametrize("written", [0.1, 0.3, 0.05, 0.7])
def test_numpy_keep_ratio_keeps_what_was_written(written):
    from fractions import Fraction

    from vissparse.strategies import kept_count

    for value in (np.float32(written), np.float16(written), np.float64(written)):
        ratio = PruningConfig(keep_ratio=value).keep_ratio
        assert ratio == written and kept_count(ratio, 1000) == kept_count(written, 1000)
    assert PruningConfig(keep_ratio=Fraction(1, 10)).keep_ratio == 0.1


def test_scorer_strategy_mode_checked():
    assert PruningConfig(scorer=CosineScorer()).mode == "drop"
    with pytest.raises(TypeError, match="`scorer`"):
        PruningConfig(scorer=3)
    with pytest.raises(TypeError, match="`strategy`"):
        PruningConfig(strategy=object())
    with pytest.raises(ValueError, match="`mode`"):
        PruningConfig(mode="prune")


@pytest.mark.parametrize(
    ("options", "match"),
    [({"layer": 3}, r"^`layer`=3 applies to stage='llm' only"),
     ({"layer": (1, 2), "stage": "input"}, r"^`layer`=\(1, 2\) applies to stage='llm' only"),
     ({"layer": 2, "stage": "llm", "schedule": [(1, 0.5), (2, 0.25)]},
      r"^`layer`=2 and `schedule` were both given"),
     ({"stage": "llm", "schedule": {1: 0.1}},
      r"^`schedule` must be a non-empty list of \(layer, keep_ratio\) pairs such as "),
     ({"stage": "llm", "schedule": [1, 0.1]}, r"^`schedule` entries must be \(layer, keep_ratio\)"),
     ({"stage": "llm", "schedule": [{1: 0.1}]}, r"^`schedule` entries must be")],
)  # fmt: skip
def test_layer_and_schedule_refused_where_they_do_not_apply(options, match):
    with pytest.raises(ValueError, match=match) as err:
        PruningConfig(keep_ratio=0.25, **options)
    assert "\n" not in str(err.value)


def test_layer_defaults_to_two_inside_the_language_model_only():
    assert PruningConfig(stage="llm").layer_schedule().layers == (2,)
    assert PruningConfig().layer is None
    config = PruningConfig(keep_ratio=0.25, stage="llm", schedule=[[1, 0.5], [3, 0.25]])
    assert config.schedule == ((1, 0.5), (3, 0.25))
    assert config.layer_schedule().stages == ((1, 0.5), (3, 0.25))


def test_the_facade_passes_layer_only_when_given():
    from vissparse import VisSparse

    assert VisSparse("mock", mock=True, dim=32, n_tokens=64).config.layer is None
    with pytest.raises(ValueError, match=r"^`layer`=3 applies to stage='llm' only"):
        VisSparse("mock", mock=True, layer=3)


def test_compile_is_a_bool_for_the_input_stage_only():
    assert PruningConfig(keep_ratio=0.25).compile is False
    assert PruningConfig(keep_ratio=0.25, compile=True).compile is True
    with pytest.raises(TypeError, match=r"^`compile` must be a bool, got 1$"):
        PruningConfig(compile=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^`compile`=True runs with stage='input' only"):
        PruningConfig(keep_ratio=0.25, scorer="fastv", stage="llm", layer=2, compile=True)


def test_the_facade_passes_compile_and_mock_mode_refuses_it():
    from vissparse import VisSparse

    assert VisSparse("mock", mock=True, dim=32, n_tokens=64).config.compile is False
    with pytest.raises(ValueError, match=r"^mock mode supports `compile=False` only"):
        VisSparse("mock", mock=True, compile=True)
