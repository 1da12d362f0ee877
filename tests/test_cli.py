import json

import pytest

from vissparse.bench.report import format_table
from vissparse.cli import main


def test_bench_json_one_row_per_keep_ratio(capsys):
    code = main(["bench", "--mock", "--keep-ratio", "0.1", "--keep-ratio", "0.5",
                 "--n-samples", "4", "--warmup", "1", "--json"])  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert [row["keep_ratio"] for row in payload["results"]] == [0.1, 0.5]
    assert payload["results"][0]["n_samples"] == 4
    assert "torch" in payload["machine"]


def test_bench_table(capsys):
    assert main(["bench", "--mock", "--n-samples", "3", "--scorer", "random"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].split()[:2] == ["keep", "scorer"]
    assert lines[1].split()[1] == "random"
    assert "mock keep=0.1" in out.err  # the progress bar


def test_bench_rejects_bad_keep_ratio(capsys):
    with pytest.raises(SystemExit) as err:
        main(["bench", "--mock", "--keep-ratio", "2"])
    assert err.value.code == 2
    assert "keep_ratio" in capsys.readouterr().err


def test_format_table_aligns_columns():
    table = format_table([{"keep_ratio": 0.1, "speedup": 8.123}, {"keep_ratio": 1.0}])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert "8.12x" in lines[1]


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--mock", "--records"], "--records adds per-call records"),
     (["--mock", "--dtype", "bfloat16"], "--dtype is for --model-config"),
     (["--mock", "--device", "cpu"], "--device is for --model-config"),
     (["--model-config", "llava-1.5-7b", "--n-samples", "3"], "--n-samples is for --mock"),
     (["--model-config", "llava-1.5-7b", "--device", "bogus"], "--device 'bogus' is not"),
     (["--model-config", "llava-1.5-7b", "--device", "cuda"], "--device 'cuda': this torch")],
)  # fmt: skip
def test_bench_refuses_what_it_would_ignore_in_one_line(capsys, flags, message):
    import torch

    if "cuda" in flags and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main(["bench", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bench_checks_out_first_and_creates_its_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    # a path below a file cannot be created: refused before any sample runs
    assert main(["bench", "--mock", "--n-samples", "2", "--out", str(blocker / "r.json")]) == 2
    captured = capsys.readouterr()
    assert "--out" in captured.err and captured.out == "" and "mock keep" not in captured.err
    out = tmp_path / "new" / "deeper" / "r.json"
    assert main(["bench", "--mock", "--n-samples", "2", "--warmup", "0", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"][0]["n_samples"] == 2
    assert capsys.readouterr().out.splitlines()[0].split()[:2] == ["keep", "scorer"]
    assert main(["sweep", "--mock", "--n-samples", "2", "--out", str(blocker)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_model_bench_compares_every_scorer_given(capsys):
    argv = ["bench", "--model-config", "qwen2-vl-2b", "--depth-scale", "32", "--repeats", "1",
            "--warmup", "0", "--new-tokens", "1", "--keep-ratio", "0.1",
            "--scorer", "cosine", "--scorer", "uniform"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[0] == "scorer"
    assert [line.split()[0] for line in out.splitlines()[1:3]] == ["cosine", "uniform"]


def test_model_bench_llm_stage(capsys):
    argv = ["bench", "--model-config", "qwen2-vl-2b", "--depth-scale", "14", "--repeats", "1",
            "--warmup", "0", "--new-tokens", "1", "--keep-ratio", "0.1", "--scorer", "fastv",
            "--stage", "llm", "--layer", "1"]  # fmt: skip
    assert main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "avg/layer" in header and "input keep @FLOPs" in header
    assert main(["bench", "--mock", "--stage", "llm"]) == 2
    assert "--stage llm is for --model-config" in capsys.readouterr().err
