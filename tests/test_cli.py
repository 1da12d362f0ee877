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
    assert "argument --keep-ratio: expected a real number in [0.05, 1.0], got '2'" in (
        capsys.readouterr().err
    )


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
     (["--mock", "--batch-size", "2"], "--batch-size is for --model-config"),
     (["--mock", "--compile"], "--compile is for --model-config runs"),
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


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--stage", "llm", "--scorer", "fastv", "--layer", "3", "--layer", "2"],
      "stages must have increasing layers"),
     (["--scorer", "fastv"], "`scorer` 'fastv' reads attention inside the language model: pass "
                             "stage='llm'"),
     (["--stage", "llm", "--scorer", "fastv", "--layer", "999"],
      "`layer` 999 is beyond the language model's 4 layers (0..3)"),
     (["--stage", "llm", "--scorer", "fastv", "--layer", "0"], "`layer` must be >= 1"),
     (["--depth-scale", "0.5"], "`depth_scale` must be a number >= 1, got 0.5"),
     (["--compile", "--stage", "llm", "--scorer", "fastv", "--layer", "2"],
      "`compile=True` needs stage='input', got stage='llm'"),
     (["--compile", "--warmup", "0"], "`warmup` must be >= 1 with compile=True")],
)  # fmt: skip
def test_model_bench_checks_settings_before_the_build(monkeypatch, capsys, flags, message):
    from vissparse.bench import model_bench

    build = model_bench.build_model

    def weightless_only(name, depth_scale, dtype, device, *args):
        assert device == "meta", "the model was built before the settings were checked"
        return build(name, depth_scale, dtype, device, *args)

    monkeypatch.setattr(model_bench, "build_model", weightless_only)
    assert main(["bench", "--model-config", "llava-1.5-7b", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["bench", "--mock", "--n-samples", "x"],
      "argument --n-samples: expected a positive integer, got 'x'"),
     (["bench", "--mock", "--n-samples", "0"],
      "argument --n-samples: expected a positive integer, got '0'"),
     (["bench", "--mock", "--warmup", "-1"],
      "argument --warmup: expected an integer >= 0, got '-1'"),
     (["bench", "--mock", "--seed", "1.5"], "argument --seed: expected an integer, got '1.5'"),
     (["bench", "--model-config", "qwen2-vl-2b", "--batch-size", "0"],
      "argument --batch-size: expected a positive integer, got '0'"),
     (["bench", "--model-config", "qwen2-vl-2b", "--batch-size", "two"],
      "argument --batch-size: expected a positive integer, got 'two'"),
     (["bench", "--mock", "--keep-ratio", "x"],
      "argument --keep-ratio: expected a real number in [0.05, 1.0], got 'x'"),
     (["sweep", "--mock", "--out", "o", "--max-new-tokens", "-1"],
      "argument --max-new-tokens: expected a positive integer, got '-1'"),
     (["tune", "--mock", "--max-accuracy-drop", "2"],
      "argument --max-accuracy-drop: expected a number in [0, 1], got '2'"),
     (["tune", "--mock", "--target-speedup", "inf"],
      "argument --target-speedup: expected a number > 0, got 'inf'")],
)  # fmt: skip
def test_argument_errors_name_the_flag(capsys, argv, message):
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    assert f"error: {message}\n" in capsys.readouterr().err


def test_library_errors_are_one_line_in_every_command(tmp_path, capsys, monkeypatch):
    import PIL.Image

    from vissparse.testing import random_image

    big = tmp_path / "big.png"
    random_image(64, 64).save(big)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 is a "bomb" now
    png = str(tmp_path / "s.png")
    cases = [
        ["show", str(big), "What is it?", "--model", "tiny:llava", "--out", png],
        ["show", "x", "What?", "--mock", "--out", png],
        ["sweep", "--model", "tiny:llava", "--data", str(tmp_path / "none.jsonl"),
         "--out", str(tmp_path / "o")],
        ["tune", "--model", "tiny:llava", "--target-speedup", "2"],
        ["bench", "--model-config", "no-such-model"],
        ["testbed", "card", "--model", str(tmp_path)],
    ]  # fmt: skip
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
        assert len(lines) == 1 and "Traceback" not in err, (argv, err)
        assert lines[0].startswith(
            f"vissparse {' '.join(argv[: 2 if argv[0] == 'testbed' else 1])}"
        )


def test_an_image_over_the_pixel_limit_is_one_line(tmp_path, capsys, monkeypatch):
    import PIL.Image

    from vissparse import cli

    def bomb(*args, **kwargs):
        raise PIL.Image.DecompressionBombError("Image size (182250000 pixels) exceeds limit")

    monkeypatch.setattr(cli, "run_show", bomb)
    assert main(["show", "big.png", "What?", "--mock"]) == 2
    assert capsys.readouterr().err == (
        "vissparse show: error: Image size (182250000 pixels) exceeds limit\n"
    )


@pytest.mark.parametrize(("flags", "compile", "warmup"),
                         [([], False, 1), (["--compile"], True, 2),
                          (["--compile", "--warmup", "3"], True, 3)])  # fmt: skip
def test_model_bench_compile_flag_reaches_the_bench(monkeypatch, capsys, flags, compile, warmup):
    from vissparse.bench import model_bench

    seen = {}

    def fake(name, keep_ratios, **kwargs):
        seen.update(kwargs)
        report = {"config": {"name": name, "batch_size": 1, "compile": compile}, "results": []}
        kwargs["on_row"](report)
        return report

    monkeypatch.setattr(model_bench, "run_model_bench", fake)
    assert main(["bench", "--model-config", "llava-1.5-7b", "--json", *flags]) == 0
    assert (seen["compile"], seen["warmup"]) == (compile, warmup)
    assert json.loads(capsys.readouterr().out)["config"]["compile"] is compile
