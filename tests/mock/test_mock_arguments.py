"""Mock-mode arguments get one-line errors that name the argument and what it expects."""

import pytest
import torch
from PIL import Image

from vissparse import VisSparse
from vissparse.mock import MockModelConfig, MockSampleConfig


@pytest.fixture(scope="module")
def vs():
    return VisSparse("mock", mock=True, dim=32, n_tokens=64)


@pytest.mark.parametrize(
    ("image", "prompt", "exc", "message"),
    [(Image.new("RGB", (8, 8)), "What color?", TypeError,
      r"`image` in mock mode must be a \[N, 32\] float tensor .*, got Image$"),
     ("car.jpg", "What color?", TypeError, "`image` in mock mode .*got str$"),
     (torch.zeros(64, 16), "What color?", ValueError, r"`image` .*got shape \(64, 16\)"),
     (torch.zeros(0, 32), "What color?", ValueError, r"N >= 1, got shape \(0, 32\)"),
     (torch.zeros(64), "What color?", ValueError, r"got shape \(64,\)"),
     (torch.zeros(64, 32, dtype=torch.long), "What color?", TypeError, "got dtype torch.int64"),
     (torch.zeros(64, 32), ["What color?"], TypeError, "`prompt` in mock mode must be one string"),
     (torch.zeros(64, 32), None, TypeError, "`prompt` .*got NoneType")],
)  # fmt: skip
def test_generate_names_the_bad_argument(vs, image, prompt, exc, message):
    """The issue's repro: a PIL image gave "'Image' object has no attribute 'dim'"."""
    with pytest.raises(exc, match=message) as info:
        vs.generate(image=image, prompt=prompt)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "exc", "message"),
    [({"n_tokens": "x"}, TypeError, "`n_tokens` must be an int, got 'x'"),
     ({"n_tokens": 16.0}, TypeError, "`n_tokens` must be an int, got 16.0"),
     ({"n_tokens": -4}, ValueError, "`n_tokens` must be a square number >= 16, got -4"),
     ({"n_tokens": 1000}, ValueError, "`n_tokens` must be a square number"),
     ({"seed": 1.5}, TypeError, "`seed` must be an int, got 1.5"),
     ({"dim": "x"}, ValueError, "`dim` must be an int >= 8"),
     ({"model_config": {"n_layers": 1}}, TypeError, "`model_config` must be a MockModelConfig"),
     ({"sample_config": 64}, TypeError, "`sample_config` must be a MockSampleConfig, got 64")],
)  # fmt: skip
def test_mock_options_name_the_argument(options, exc, message):
    """The issue's repro: n_tokens='x' gave "unsupported operand type(s) for ** ..."."""
    with pytest.raises(exc, match=message):
        VisSparse(base_model="mock", mock=True, **options)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_heads": 0}, "`n_heads` must be an int >= 1, got 0"),
     ({"n_layers": 1.0}, "`n_layers` must be an int >= 1"),
     ({"temperature": float("nan")}, "`temperature` must be a finite number > 0, got nan"),
     ({"temperature": 0}, "`temperature` must be a finite number > 0, got 0")],
)  # fmt: skip
def test_model_config_is_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MockModelConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [({"answer_size": 1.5}, TypeError, "`answer_size` must be an int"),
     ({"distractor_size": 40}, ValueError, r"`distractor_size` must be in \[1, 32\], got 40"),
     ({"noise": -1.0}, ValueError, "`noise` must be a finite number >= 0"),
     ({"object_weight": "1"}, TypeError, "`object_weight` must be a number"),
     ({"n_distractors": 16}, ValueError, r"`n_distractors` must be in \[0, 15\], got 16")],
)  # fmt: skip
def test_sample_config_is_checked(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        MockSampleConfig(**kwargs)


def test_the_mock_refuses_downsampling_at_set_up():
    """Regression: the mock took ``scorer="downsample"`` and failed at the first sample."""
    with pytest.raises(ValueError, match=r"resizes each image before the processor.*'pool'"):
        VisSparse(base_model="mock", mock=True, scorer="downsample", keep_ratio=0.25)
