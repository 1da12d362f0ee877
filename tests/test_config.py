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
