"""``vissparse testbed``: settings checked before any work, one-line errors, Ctrl-C kept."""

import json
import re

import pytest

from vissparse.cli import main as cli
from vissparse.testbed import evaluate, llm_rows
from vissparse.testbed.train import train as train_function  # before `no_training` patches it


def _one_line(err: str) -> str:
    """The one line of ``err`` besides the progress bars' redrawn lines."""
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and "%|" not in line]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.fixture
def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(evaluate, "load_testbed_model", refuse)


@pytest.fixture
def no_training(monkeypatch):
    """No test trains: a setting that slips through fails at once, not after a training."""
    from vissparse.testbed import models, train

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the settings were checked")

    monkeypatch.setattr(models, "build_model", refuse)
    monkeypatch.setattr(train, "train", refuse)


def test_eval_checks_out_first(saved_untrained, tmp_path, capsys, no_model_loads):
    args = ["testbed", "eval", "--model", str(saved_untrained), "--n", "4", "--out"]
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli([*args, str(blocker)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert (
        err == f"vissparse testbed eval: error: --out {str(blocker)!r} is a file; expected a folder"
    )
    assert cli([*args, str(blocker / "below")]) == 2
    err = _one_line(capsys.readouterr().err)
    assert f"--out {str(blocker / 'below')!r} cannot be written" in err


def test_eval_refuses_an_in_llm_method_without_a_row(saved_untrained, tmp_path, capsys,
                                                      no_model_loads):  # fmt: skip
    out = tmp_path / "out"
    argv = ["testbed", "eval", "--model", str(saved_untrained), "--out", str(out), "--n", "4",
            "--scorer", "fastv", "--keep-ratio", "0.25"]  # fmt: skip
    assert cli(argv) == 2
    err = _one_line(capsys.readouterr().err)
    assert "`--keep-ratio` [0.25] give fastv no row" in err and "from layer 1 of 4" in err
    assert "keep ratio >= 0.288 (or 1.0)" in err
    assert not list(out.iterdir())  # no empty CSV, no JSON without results
    # a keep ratio it can reach, or 1.0, is a row: accepted (here up to the model load)
    for keep in ("0.29", "1.0"):
        with pytest.raises(AssertionError, match="a model was loaded"):
            cli([*argv[:-1], keep])


def test_lowest_llm_keep_is_reachable():
    from vissparse.llm.schedule import schedule_for_average

    for scorer, n_layers in (("fastv", 4), ("pdrop", 4), ("fastv", 32), ("pdrop", 6)):
        low = llm_rows.lowest_llm_keep(scorer, n_layers)
        layers = llm_rows.llm_layers(scorer, n_layers)
        assert schedule_for_average(layers, n_layers, low) is not None
        assert schedule_for_average(layers, n_layers, low - 0.002) is None


def test_eval_interrupted_keeps_the_finished_runs(saved_untrained, tmp_path, monkeypatch,
                                                  capsys):  # fmt: skip
    answer_all, calls = evaluate.answer_all, []

    def interrupted_at_the_blank_check(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # random, then cosine finished; then the blank image
            raise KeyboardInterrupt
        return answer_all(*args, **kwargs)

    monkeypatch.setattr(evaluate, "answer_all", interrupted_at_the_blank_check)
    code = cli(["testbed", "eval", "--model", str(saved_untrained), "--out", str(tmp_path),
                "--n", "4", "--batch-size", "4", "--scorer", "cosine", "--scorer", "random",
                "--keep-ratio", "0.25", "--random-seeds", "1"])  # fmt: skip
    assert code == 130
    captured = capsys.readouterr()
    kept = tmp_path / "testbed_eval.json"
    assert _one_line(captured.err) == (
        f"vissparse testbed eval: interrupted: {len(json.loads(kept.read_text())['results'])} "
        f"finished rows kept in {kept}"
    )
    payload = json.loads(kept.read_text())
    assert payload["partial"] is True
    everything = [r for r in payload["results"] if r["family"] == "all"]
    assert [r["scorer"] for r in everything] == ["cosine", "random"]  # as the scorers are given
    assert "vs_random_p_value" in everything[0]  # its reference had finished
    assert "| cosine | " in captured.out and "| random | " in captured.out  # the table
    assert not (tmp_path / "testbed_accuracy.png").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--clutter-ramp", "-3"], "argument --clutter-ramp: expected a number in [0, 1], got '-3'"),
     (["--extra-turns", "-2"], "argument --extra-turns: expected an integer >= 0, got '-2'"),
     (["--lr", "-1"], "argument --lr: expected a number > 0, got '-1'"),
     (["--lr", "nan"], "argument --lr: expected a number > 0, got 'nan'"),
     (["--steps", "x"], "argument --steps: expected a positive integer, got 'x'"),
     (["--workers", "2"], "argument --workers: invalid choice: 2")],
)  # fmt: skip
def test_train_refuses_bad_settings_before_making_out(tmp_path, capsys, no_training, flags,
                                                      message):  # fmt: skip
    out = tmp_path / "never-made"
    with pytest.raises(SystemExit) as err:
        cli(["testbed", "train", "--family", "llava", "--out", str(out), *flags])
    assert err.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"lr": -1.0}, "`lr` must be a number > 0, got -1.0"),
     ({"lr": float("inf")}, "`lr` must be a number > 0, got inf"),
     ({"clutter_ramp": -3}, "`clutter_ramp` must be a number in [0, 1], got -3"),
     ({"family_ramp": 1.5}, "`family_ramp` must be a number in [0, 1], got 1.5"),
     ({"extra_turns": -2}, "`extra_turns` must be an int >= 0, got -2"),
     ({"aux_weight": -0.5}, "`aux_weight` must be a number >= 0, got -0.5")],
)  # fmt: skip
def test_train_function_refuses_bad_settings_before_making_out(tmp_path, no_training, setting,
                                                               message):  # fmt: skip
    out = tmp_path / "never-made"
    with pytest.raises(ValueError) as err:
        train_function("llava", out, steps=2, **setting)
    assert str(err.value) == message
    assert not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"`out` '.*file' is a file; expected a folder"):
        train_function("llava", blocker, steps=2)


def test_export_and_card_errors_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli(["testbed", "export", "--n", "2", "--out", str(blocker)]) == 2
    assert "--out" in _one_line(capsys.readouterr().err)
    assert cli(["testbed", "card", "--model", str(tmp_path)]) == 2
    assert "has no training.json" in _one_line(capsys.readouterr().err)
