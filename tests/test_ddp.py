"""Two processes (CPU, gloo, strategy="ddp") aggregate exactly what one process does."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "validate.py"
ARGS = ["--n-samples", "11", "--batch-size", "2", "--dim", "64", "--n-tokens", "256"]


def run(tmp_path, devices, *extra):
    out = tmp_path / f"d{devices}.json"
    cmd = [sys.executable, str(EXAMPLE), *ARGS, "--devices", str(devices),
           "--log-dir", str(tmp_path / f"logs{devices}"), "--json", str(out), *extra]  # fmt: skip
    if devices > 1:
        cmd += ["--strategy", "ddp"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def same_metrics(one, two, n):
    assert two["world_size"] == 2
    assert one["indices"] == two["indices"] == list(range(n))  # each sample counted once
    keys = ["val/accuracy", "val/baseline_accuracy", "val/accuracy_delta"]
    keys += [k.replace("val/", "monitor/") for k in keys]
    for key in keys:
        assert abs(one["metrics"][key] - two["metrics"][key]) < 1e-6, key


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """Single-process results per sample count (no sampler: the reference)."""
    cache = {}

    def get(n):
        if n not in cache:
            cache[n] = run(tmp_path_factory.mktemp(f"one{n}"), 1, "--n-samples", str(n))
        return cache[n]

    return get


def test_ddp_two_processes_match_one(tmp_path, one_process):
    # 11 samples over 2 processes in batches of 2: uneven shards and last batches
    same_metrics(one_process(11), run(tmp_path, 2), 11)


@pytest.mark.parametrize("n", [11, 12])
def test_ddp_with_a_plain_dataloader_counts_each_sample_once(tmp_path, one_process, n):
    # Lightning pads an uneven split by repeating a sample; the module leaves it out
    two = run(tmp_path, 2, "--plain-loader", "--n-samples", str(n))
    same_metrics(one_process(n), two, n)
