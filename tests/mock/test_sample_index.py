"""Mock sample N costs one sample, whatever N; N out of range is one line."""

import os
import subprocess
import sys

import pytest
import torch

import vissparse.mock.samples as samples_module
from vissparse import VisSparse
from vissparse.data import MockVQADataset
from vissparse.mock import MockSampleConfig, MockWorld, make_samples
from vissparse.mock.samples import MAX_INDEX, sample_at

WORLD, CONFIG = MockWorld(dim=16), MockSampleConfig(n_tokens=64)


def same(a, b):
    return (a.prompt, a.answer, a.objects) == (b.prompt, b.answer, b.objects) and torch.equal(
        a.image_tokens, b.image_tokens
    )


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    original = samples_module.make_sample

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(samples_module, "make_sample", counting)
    return calls


def test_sample_n_builds_one_sample(count_builds):
    """The issue's repro: N = 1,000,000 did not finish in 300 s; 2**63 - 1 is the last."""
    vs = VisSparse("mock", mock=True, dim=16, n_tokens=64)
    for n in (1000, 10**6, MAX_INDEX):  # 1000 first: the old stream fails it fast
        before = len(count_builds)
        assert vs.pipeline.sample(n).image_tokens.shape == (64, 16)
        assert len(count_builds) == before + 1


@pytest.mark.parametrize("bad", [10**23, MAX_INDEX + 1, -1, 2.0, "3", True, None])
def test_sample_index_out_of_range_is_one_line(bad):
    vs = VisSparse("mock", mock=True, dim=16, n_tokens=64)
    with pytest.raises(ValueError, match=rf"`index` must be a sample number in \[0, {MAX_INDEX}\]"):
        vs.pipeline.sample(bad)


def test_sample_alone_equals_the_list_for_every_seed():
    for seed in (0, 3, -3):
        listed = make_samples(4, WORLD, CONFIG, seed=seed)
        assert all(same(sample_at(i, WORLD, CONFIG, seed), listed[i]) for i in range(4))
    a, b = make_samples(2, WORLD, CONFIG, seed=3), make_samples(2, WORLD, CONFIG, seed=-3)
    assert not torch.equal(a[0].image_tokens, a[1].image_tokens)
    assert not torch.equal(a[0].image_tokens, b[0].image_tokens)  # seed and -seed differ


def test_samples_do_not_depend_on_the_process():
    """String seeds go through SHA-512, not ``hash()``: PYTHONHASHSEED changes nothing."""
    code = (
        "from vissparse.mock import MockSampleConfig, MockWorld\n"
        "from vissparse.mock.samples import sample_at\n"
        "s = sample_at(5, MockWorld(dim=16), MockSampleConfig(n_tokens=64), 7)\n"
        "print(s.prompt, float(s.image_tokens.sum()))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    here = sample_at(5, WORLD, CONFIG, 7)
    assert out == f"{here.prompt} {float(here.image_tokens.sum())}"


def test_bad_seed():
    with pytest.raises(TypeError, match="`seed` must be an int, got '1'"):
        sample_at(0, WORLD, CONFIG, seed="1")
    with pytest.raises(TypeError, match="`seed` must be an int"):
        VisSparse("mock", mock=True, seed="x")


def test_mock_dataset_builds_samples_when_read(count_builds):
    ds = MockVQADataset(10**12, seed=3, dim=16, n_tokens=64)
    assert len(count_builds) == 0 and len(ds) == 10**12
    last = ds[-1]
    assert last["index"] == 10**12 - 1 and len(count_builds) == 1
    assert same_item(last, sample_at(10**12 - 1, WORLD, CONFIG, seed=3))
    assert same_item(ds[2], make_samples(3, WORLD, CONFIG, seed=3)[2])
    with pytest.raises(IndexError, match="out of range for 1000000000000 samples"):
        ds[10**12]
    with pytest.raises(TypeError, match="`index` must be an int"):
        ds["0"]
    with pytest.raises(ValueError, match="`n_samples`"):
        MockVQADataset(MAX_INDEX + 2)


def same_item(item, sample):
    return item["question"] == sample.prompt and torch.equal(item["image"], sample.image_tokens)


def test_show_with_a_huge_sample_number_is_one_line(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    from vissparse.cli import main

    out = tmp_path / "x.png"
    assert main(["show", str(10**23), "What color?", "--mock", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "`index` must be a sample number" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
