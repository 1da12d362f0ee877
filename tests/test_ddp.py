"""Two processes (CPU, gloo, strategy="ddp") aggregate exactly what one process does."""

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "validate.py"
ARGS = ["--n-samples", "11", "--batch-size", "2", "--dim", "64", "--n-tokens", "256"]


def run(tmp_path, devices):
    out = tmp_path / f"d{devices}.json"
    cmd = [sys.executable, str(EXAMPLE), *ARGS, "--devices", str(devices),
           "--log-dir", str(tmp_path / f"logs{devices}"), "--json", str(out)]  # fmt: skip
    if devices > 1:
        cmd += ["--strategy", "ddp"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_ddp_two_processes_match_one(tmp_path):
    one, two = run(tmp_path, 1), run(tmp_path, 2)
    assert two["world_size"] == 2
    # 11 samples over 2 processes in batches of 2: uneven shards and last batches
    assert one["indices"] == two["indices"] == list(range(11))
    keys = ["val/accuracy", "val/baseline_accuracy", "val/accuracy_delta"]
    keys += [k.replace("val/", "monitor/") for k in keys]
    for key in keys:
        assert abs(one["metrics"][key] - two["metrics"][key]) < 1e-6, key
