"""sweep / tune / show, through the API and the command line."""

import csv
import json

import pytest
from PIL import Image

from vissparse import VisSparse
from vissparse.cli import main
from vissparse.testing import random_image, tiny_model


def test_sweep_rows_on_mock():
    vs = VisSparse("mock", mock=True, dim=64, n_tokens=256)
    rows = vs.sweep([0.1, 0.5, 1.0], n_samples=20, progress=False)
    assert [r["keep_ratio"] for r in rows] == [0.1, 0.5, 1.0]
    assert {"keep_ratio", "speedup", "accuracy", "accuracy_delta"} <= rows[0].keys()
    assert rows[-1]["accuracy_delta"] == 0
    assert rows[0]["n_kept"] < rows[1]["n_kept"] < rows[2]["n_kept"]
    with pytest.raises(ValueError, match="keep_ratios"):
        vs.sweep([0.01])


def test_sweep_rows_on_tiny_hf():
    model, processor = tiny_model("llava")
    vs = VisSparse(model, processor=processor)
    samples = [{"image": random_image(seed=i), "prompt": "What?", "answer": "x"} for i in range(3)]
    rows = vs.sweep([0.25, 1.0], n_samples=3, samples=samples, warmup=0, progress=False,
                    max_new_tokens=2)  # fmt: skip
    assert [r["n_kept"] for r in rows] == [4, 16]


def test_sweep_cli_writes_csv_json_png(tmp_path, capsys):
    assert main(["sweep", "--mock", "--keep-ratio", "0.1", "--keep-ratio", "1.0",
                 "--n-samples", "5", "--out", str(tmp_path)]) == 0  # fmt: skip
    with open(tmp_path / "sweep.csv") as f:
        assert [row["keep_ratio"] for row in csv.DictReader(f)] == ["0.1", "1.0"]
    assert len(json.loads((tmp_path / "sweep.json").read_text())["results"]) == 2
    with Image.open(tmp_path / "sweep.png") as img:
        assert img.format == "PNG" and img.size[0] > 300
    assert "wrote" in capsys.readouterr().out


def test_sweep_cli_with_tiny_model_and_data(tmp_path):
    random_image().save(tmp_path / "a.png")
    line = json.dumps({"image": "a.png", "question": "What?", "answer": "x"})
    (tmp_path / "qa.jsonl").write_text(line + "\n" + line + "\n")
    assert main(["sweep", "--model", "tiny:qwen2_vl", "--data", str(tmp_path / "qa.jsonl"),
                 "--keep-ratio", "0.5", "--n-samples", "2", "--max-new-tokens", "2",
                 "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    assert (tmp_path / "out" / "sweep.png").is_file()


def test_tune_cli_exit_codes(capsys):
    assert main(["tune", "--mock", "--max-accuracy-drop", "1.0", "--n-samples", "3",
                 "--step", "0.25", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["keep_ratio"] == 0.05
    assert main(["tune", "--mock", "--target-speedup", "1e6", "--n-samples", "3",
                 "--step", "0.5"]) == 1  # fmt: skip
    assert "cannot be met" in capsys.readouterr().out


def test_show_cli_mock_and_tiny(tmp_path):
    out = tmp_path / "mock.png"
    assert main(["show", "2", "What color is the car?", "--prompt", "Is it a dog?", "--mock",
                 "--out", str(out)]) == 0  # fmt: skip
    assert out.is_file()
    random_image(90, 120).save(tmp_path / "img.png")
    out = tmp_path / "tiny.png"
    assert main(["show", str(tmp_path / "img.png"), "What is it?", "--model", "tiny:llava",
                 "--out", str(out)]) == 0  # fmt: skip
    assert out.is_file()


def test_cli_needs_exactly_one_model(capsys):
    assert main(["sweep", "--out", "x"]) == 2
    assert "exactly one of --mock and --model" in capsys.readouterr().err


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        main(["tune", "--mock", "--target-speedup", "-1", "--n-samples", "2"])
    assert err.value.code == 2
    assert "argument --target-speedup: expected a number > 0, got '-1'" in capsys.readouterr().err
    assert main(["show", "x", "What?", "--mock"]) == 2
    assert "sample number" in capsys.readouterr().err
    assert main(["sweep", "--model", "tiny:llava", "--out", "unused"]) == 2
    with pytest.raises(SystemExit) as err:
        main(["bench", "--mock", "--warmup", "-1"])
    assert err.value.code == 2


def test_sweep_accepts_a_generator_of_samples():
    model, processor = tiny_model("llava")
    vs = VisSparse(model, processor=processor)
    samples = ({"image": random_image(seed=i), "prompt": "What?", "answer": "x"} for i in range(2))
    rows = vs.sweep([0.25, 0.5], n_samples=2, samples=samples, warmup=0, progress=False,
                    max_new_tokens=1)  # fmt: skip
    assert [r["n_samples"] for r in rows] == [2, 2]


def test_sweep_cli_names_the_data_line_of_a_bad_prompt_before_any_run(tmp_path, capsys):
    random_image().save(tmp_path / "a.png")
    good = json.dumps({"image": "a.png", "question": "What?", "answer": "x"})
    bad = json.dumps({"image": "a.png", "question": "</s>", "answer": "x"})
    (tmp_path / "qa.jsonl").write_text(f"{good}\n\n{bad}\n")  # line 2 is blank
    out = tmp_path / "out"
    argv = ["sweep", "--model", "tiny:llava", "--data", str(tmp_path / "qa.jsonl"),
            "--keep-ratio", "0.5", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"vissparse sweep: error: {tmp_path / 'qa.jsonl'}:3: `prompt` '</s>' has no "
                   "token of its own once the tokenizer's special tokens are set aside; the query "
                   "is built from the prompt's tokens\n")  # fmt: skip
    assert not (out / "sweep.json").exists()
