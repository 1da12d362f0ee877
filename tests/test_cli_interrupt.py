"""Ctrl-C keeps every finished row: in ``--out``, in the printed table, on ``records``."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vissparse import VisSparse
from vissparse.cli import main

KEEPS = [f"0.{i:02d}" for i in range(10, 100, 8)]  # 12 rows: far more than one


def _finished_rows(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError):  # not written yet
        return []


def _interrupt_after_first_row(argv: list[str], out: Path) -> tuple[int, str, str]:
    """Run ``vissparse ARGV``, send SIGINT once ``out`` holds a finished row."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vissparse.cli", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while not _finished_rows(out):
            assert proc.poll() is None, f"ended before a row finished: {proc.communicate()}"
            assert time.monotonic() < deadline, "no row finished in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stdout, stderr


def _message_lines(stderr: str) -> list[str]:
    """stderr without the progress bars' redrawn lines."""
    return [line for line in re.split(r"[\r\n]", stderr) if line.strip() and "%|" not in line]


@pytest.mark.parametrize("command", ["sweep", "bench"])
def test_ctrl_c_keeps_the_finished_rows_and_exits_130(tmp_path, command):
    if command == "sweep":
        out = tmp_path / "sweep.json"
        argv = ["sweep", "--mock", "--n-samples", "4", "--out", str(tmp_path)]
    else:
        out = tmp_path / "bench.json"
        argv = ["bench", "--mock", "--n-samples", "4", "--warmup", "0", "--out", str(out)]
    argv += [flag for k in KEEPS for flag in ("--keep-ratio", k)]
    code, stdout, stderr = _interrupt_after_first_row(argv, out)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    rows = _finished_rows(out)
    assert 1 <= len(rows) < len(KEEPS)
    assert [r["keep_ratio"] for r in rows] == [float(k) for k in KEEPS[: len(rows)]]
    assert json.loads(out.read_text())["partial"] is True
    n = len(rows)
    assert _message_lines(stderr) == [
        f"vissparse {command}: interrupted: {n} finished row{'s' * (n != 1)} kept in {out}"
    ]
    table = stdout.splitlines()
    assert table[0].split()[:2] == ["keep", "scorer"] and len(table) >= 1 + n  # the table
    if command == "sweep":
        assert not (tmp_path / "sweep.png").exists()
        assert (tmp_path / "sweep.csv").read_text().count("\n") == 1 + n


def test_benchmark_keeps_the_finished_records_when_interrupted(monkeypatch):
    from vissparse.mock.pipeline import MockPipeline

    run, calls = MockPipeline.run, []

    def interrupted_at_the_fourth_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return run(*args, **kwargs)

    monkeypatch.setattr(MockPipeline, "run", interrupted_at_the_fourth_call)
    vs = VisSparse("mock", mock=True, dim=32, n_tokens=64)
    with pytest.raises(KeyboardInterrupt):
        vs.benchmark(n_samples=5, warmup=0, progress=False)
    assert [r.index for r in vs.records] == [0]  # the one pair that finished
    calls.clear()
    rows = []
    with pytest.raises(KeyboardInterrupt):  # sweep(): every finished row reached `on_row`
        vs.sweep([0.25, 0.5], n_samples=1, warmup=0, progress=False, on_row=rows.append)
    assert [r["keep_ratio"] for r in rows] == [0.25]
    assert len(vs.records) == 2


def test_ctrl_c_before_any_row_is_one_line(tmp_path, monkeypatch, capsys):
    from vissparse import api

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api.VisSparse, "_benchmark", interrupt)
    assert main(["sweep", "--mock", "--out", str(tmp_path)]) == 130
    captured = capsys.readouterr()
    assert captured.err == "vissparse sweep: interrupted before the first row finished\n"
    assert captured.out == ""
    monkeypatch.setattr(api.VisSparse, "tune", interrupt)
    assert main(["tune", "--mock", "--target-speedup", "2"]) == 130
    assert capsys.readouterr().err == "vissparse tune: interrupted before the first row finished\n"


def test_ctrl_c_in_model_bench_and_tune_keeps_the_finished_rows(tmp_path, monkeypatch, capsys):
    from vissparse import api
    from vissparse.bench import model_bench

    row = {"keep_ratio": 0.1, "n_kept": 58, "n_image_tokens": 576, "prefill_speedup": 2.0,
           "overhead_fraction": 0.01}  # fmt: skip

    def one_row_then_ctrl_c(name, keep_ratios, on_row=None, **kwargs):
        on_row({"config": {"name": name}, "results": [row]})
        raise KeyboardInterrupt

    monkeypatch.setattr(model_bench, "run_model_bench", one_row_then_ctrl_c)
    out = tmp_path / "r.json"
    assert main(["bench", "--model-config", "qwen2-vl-2b", "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert captured.err == f"vissparse bench: interrupted: 1 finished row kept in {out}\n"
    assert captured.out.splitlines()[0].split()[:2] == ["keep", "kept"]
    saved = json.loads(out.read_text())
    assert saved["results"] == [row] and saved["partial"] is True
    assert list(saved) == ["config", "results", "machine", "targets", "partial"]  # as recorded

    def two_rows_then_ctrl_c(self, *args, on_row=None, **kwargs):
        on_row({"keep_ratio": 1.0, "speedup": 1.0})
        on_row({"keep_ratio": 0.05, "speedup": 3.0})
        raise KeyboardInterrupt

    monkeypatch.setattr(api.VisSparse, "tune", two_rows_then_ctrl_c)
    assert main(["tune", "--mock", "--target-speedup", "2"]) == 130
    captured = capsys.readouterr()
    assert captured.err == "vissparse tune: interrupted: 2 finished rows shown above\n"
    assert [line.split()[0] for line in captured.out.splitlines()[1:]] == ["0.05", "1.00"]
