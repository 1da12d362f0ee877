"""Training is reproducible from its seed; the eval produces its tables, stats and plot."""

import json
from collections import Counter

import numpy as np
import pytest
import torch

from vissparse.cli import main as cli
from vissparse.testbed import FAMILIES, make_questions
from vissparse.testbed.card import write_card
from vissparse.testbed.evaluate import answer_token_ids, chance_accuracy, run_scorers, summarize
from vissparse.testbed.models import IMAGE_TOKEN_MODULE, build_model
from vissparse.testbed.report import runs_table
from vissparse.testbed.stats import bootstrap_ci, paired_bootstrap
from vissparse.testbed.train import encode_training_batch, train, train_options


def test_labels_cover_answer_and_end_of_turn_only():
    for family in ("llava", "qwen2_vl"):
        _, processor = build_model(family)
        questions = make_questions(3, seed=1)
        batch = encode_training_batch(processor, questions)
        tok = processor.tokenizer
        for row, q in zip(batch["labels"], questions, strict=True):
            labelled = row[row != -100].tolist()
            assert tok.convert_ids_to_tokens(labelled) == [q["answer"], tok.eos_token]


def test_place_features_match_a_row_by_dot_product():
    """The sinusoidal part of the place target: among the 16 rows of cell centres, the
    one whose features best match (by dot product) a token's own is its own row."""
    from vissparse.testbed.training_module import AUX_PLACE_FREQUENCIES, place_features

    centres = (torch.arange(16) + 0.5) / 16 * 2 - 1
    xy = torch.stack([torch.zeros(16), centres], dim=-1)
    feats = place_features(xy)
    assert feats.shape == (16, 2 + 4 * len(AUX_PLACE_FREQUENCIES))
    assert torch.equal(feats[:, :2], xy)
    match = feats[:, 2:] @ feats[:, 2:].T  # x is the same for all: a constant
    assert torch.equal(match.argmax(dim=1), torch.arange(16))
    assert (match.diagonal() - match.topk(2, dim=1).values[:, 1]).min() > 0.05


def test_conversation_labels_every_answer():
    from vissparse.testbed.stream import QuestionStream

    stream = iter(QuestionStream(seed=0, extra_turns=3, clutter_ramp=10))
    items = [next(stream) for _ in range(3)]
    for family in ("llava", "qwen2_vl"):
        _, processor = build_model(family)
        batch = encode_training_batch(processor, items)
        tok = processor.tokenizer
        for row, item in zip(batch["labels"], items, strict=True):
            labelled = tok.convert_ids_to_tokens(row[row != -100].tolist())
            assert labelled == [w for _, a in item["turns"] for w in (a, tok.eos_token)]


def test_clutter_ramp_starts_plain_and_ends_at_the_held_out_level():
    from vissparse.testbed import make_question
    from vissparse.testbed.stream import QuestionStream

    stream = iter(QuestionStream(seed=0, clutter_ramp=4))
    items = [next(stream) for _ in range(6)]
    first = np.asarray(items[0]["image"], dtype=float)
    assert np.asarray(make_question(0, 0, "train")["image"], dtype=float).std() > first.std()
    assert np.array_equal(np.asarray(items[5]["image"]),
                          np.asarray(make_question(5, 0, "train")["image"]))  # fmt: skip


def test_curricula_grow_objects_and_families_then_ask_everything():
    from vissparse.testbed import FAMILIES, make_question
    from vissparse.testbed.derived import scene_questions
    from vissparse.testbed.stream import FAMILY_STAGES, QuestionStream

    stream = QuestionStream(seed=0, extra_turns=20, objects_ramp=40, family_ramp=40)
    items = [item for _, item in zip(range(80), iter(stream), strict=False)]
    early = [it for i, it in enumerate(items) if i < 20]
    assert all(len(it["objects"]) <= 5 for it in items[:10])
    assert max(len(it["objects"]) for it in items[40:]) > 5
    for i, item in enumerate(items):
        allowed = set(stream.families(i))
        kinds = {f for q, a, f in scene_questions(item["objects"]) if (q, a) in item["turns"]}
        assert item["family"] in allowed and kinds <= allowed
    assert {it["family"] for it in early} == set(FAMILY_STAGES[0])
    assert stream.families(40) == FAMILIES and {it["family"] for it in items[40:]} == set(FAMILIES)
    # each family draws its own questions in order: no scene is asked twice
    assert len({tuple(it["objects"]) for it in items}) == len(items)
    with pytest.raises(ValueError, match="`max_objects`"):
        make_question(0, max_objects=1)
    wrapped = [make_question(i, max_objects=3) for i in range(2, 200, 5)]  # counting
    assert all(int(q["answer"]) <= 3 and len(q["objects"]) <= 3 for q in wrapped)


def test_family_weights_ask_a_family_more_often(tmp_path, capsys):
    from vissparse.testbed.stream import QuestionStream, check_family_weights

    plain = QuestionStream(seed=0)
    weighted = QuestionStream(seed=0, family_weights={"counting": 3, "relation": 2})
    assert plain.families(0) == FAMILIES
    assert Counter(weighted.families(0)) == Counter({**dict.fromkeys(FAMILIES, 1),
                                                      "counting": 3, "relation": 2})  # fmt: skip
    items = [item for _, item in zip(range(80), iter(weighted), strict=False)]
    asked = Counter(it["family"] for it in items)
    assert asked["counting"] == 30 and asked["relation"] == 20 and asked["attribute"] == 10
    # each family still draws its own questions in order: no scene twice
    assert len({tuple(it["objects"]) for it in items}) == len(items)
    ramped = QuestionStream(seed=0, family_ramp=40, family_weights={"counting": 2})
    assert ramped.families(0) == ("attribute",)  # the first stage has no counting
    assert ramped.families(20).count("counting") == 2
    for bad, match in (({"colour": 2}, "names 'colour'"), ({"counting": 0}, "int >= 1"),
                       ({"counting": True}, "int >= 1")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            check_family_weights(bad)
    out = tmp_path / "never-made"
    args = ["testbed", "train", "--family", "llava", "--out", str(out), "--family-weight"]
    for given, error in ((["counting"], "expects FAMILY=N"), (["colour=2"], "names 'colour'"),
                         (["counting=2", "--family-weight", "counting=3"], "twice")):  # fmt: skip
        assert cli(args + given) == 2 and error in capsys.readouterr().err
    assert not out.exists()  # rejected before the output folder is made


def test_train_command_defaults_are_the_shipped_recipe(tmp_path, monkeypatch, capsys):
    """The plain command trains with the late relation target and the family's steps;
    ``--no-lm-relation`` turns the target off, and its delay with it."""
    from vissparse.testbed import train as train_module

    given = []
    monkeypatch.setattr(train_module, "train", lambda *a, **k: given.append((a, k)))
    args = ["testbed", "train", "--family", "qwen2_vl", "--out", str(tmp_path), "--no-card"]
    for extra in ([], ["--no-lm-relation"], ["--no-lm-relation-late", "--aux-key"]):
        assert cli(args + extra) == 0
    (family, _), plain = given[0]
    assert family == "qwen2_vl" and plain["steps"] == train_module.DEFAULT_STEPS["qwen2_vl"]
    switches = [{k: kw[k] for k in train_module.TRAIN_SWITCHES} for _, kw in given]
    assert switches == [
        {"aux_key": False, "aux_relation": False, "lm_relation": True, "lm_relation_late": True},
        {"aux_key": False, "aux_relation": False, "lm_relation": False, "lm_relation_late": False},
        {"aux_key": True, "aux_relation": False, "lm_relation": True, "lm_relation_late": False},
    ]
    assert plain["padding_side"] == "right" and plain["changes"] == {}
    recorded = {"family": "qwen2_vl", "steps": 1500, "padding_side": "right"}
    assert train_options(recorded | switches[0]) == []
    assert train_options(recorded | switches[2]) == ["--aux-key", "--no-lm-relation-late"]


def test_right_padded_batches_need_no_mask_and_give_the_same_loss():
    """Right-padded training batches drop the attention mask; the loss is the left-padded
    masked batch's (fp32), on both families, and the same words are labelled."""
    from vissparse.testbed.stream import QuestionStream

    stream = iter(QuestionStream(seed=0, extra_turns=3, clutter_ramp=10))
    items = [next(stream) for _ in range(3)]
    for family in ("llava", "qwen2_vl"):
        model, processor = build_model(family)
        left, right = (encode_training_batch(processor, items, side) for side in ("left", "right"))
        assert "attention_mask" in left and "attention_mask" not in right
        assert (left["input_ids"][:, 0] == processor.tokenizer.pad_token_id).any()  # padded
        assert sorted(left["labels"][left["labels"] != -100].tolist()) == sorted(
            right["labels"][right["labels"] != -100].tolist())  # fmt: skip
        losses = []
        for batch in (left, right):
            batch.pop("token_labels", None)
            with torch.no_grad():
                losses.append(model(**batch).loss.item())
        assert losses[0] == pytest.approx(losses[1], abs=1e-5), family
    with pytest.raises(ValueError, match="`padding_side` must be"):
        encode_training_batch(processor, items, "middle")


def test_architecture_changes_reach_the_model_the_record_and_the_options(
    tmp_path, monkeypatch, capsys
):
    """``--arch vision.depth=3`` builds that model; a run recorded with another
    architecture or padding side gets the options that repeat it."""
    from vissparse.testbed import train as train_module
    from vissparse.testbed.models import ARCHITECTURES, architecture

    assert len(build_model("qwen2_vl", changes={"vision.depth": 3})[0].model.visual.blocks) == 3
    assert len(build_model("qwen2_vl")[0].model.visual.blocks) == ARCHITECTURES["qwen2_vl"][
        "vision"]["depth"]  # fmt: skip
    assert architecture("llava", {"image_token_gain": 5.0})["image_token_gain"] == 5.0
    with pytest.raises(ValueError, match=r"'vision\.depht' is not one of"):
        architecture("qwen2_vl", {"vision.depht": 3})
    given = []
    monkeypatch.setattr(train_module, "train", lambda *a, **k: given.append(k))
    args = ["testbed", "train", "--family", "qwen2_vl", "--out", str(tmp_path), "--no-card"]
    assert cli([*args, "--arch", "vision.depth=3", "--arch", "text.mrope_section=[4,6,6]",
                "--padding-side", "left"]) == 0  # fmt: skip
    assert given[0]["changes"] == {"vision.depth": 3, "text.mrope_section": [4, 6, 6]}
    assert given[0]["padding_side"] == "left"
    for bad, error in (("vision.depth", "`--arch` expects KEY=VALUE"),
                       ("vision.depth=three", "`--arch` expects KEY=VALUE"),
                       ("vision.width=3", "'vision.width' is not one of")):  # fmt: skip
        assert cli([*args, "--arch", bad]) == 2 and error in capsys.readouterr().err
    assert len(given) == 1  # nothing trained on a bad option
    recorded = {"family": "qwen2_vl", "padding_side": "left", "lm_relation": True,
                "lm_relation_late": True,
                "architecture": architecture("qwen2_vl", {"vision.depth": 3})}  # fmt: skip
    assert train_options(recorded) == ["--padding-side left", "--arch vision.depth=3"]


def test_training_is_reproducible_from_the_seed(tmp_path):
    def weights(out):
        train("llava", out, seed=3, steps=3, vision_steps=1, batch_size=2, warmup=1,
              workers=0, precision="32-true", progress=False, val_questions=0)  # fmt: skip
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(out).state_dict()

    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    untrained = build_model("llava", seed=3)[0].state_dict()
    assert a.keys() == b.keys() == untrained.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], untrained[k]) for k in a)
    info = json.loads((tmp_path / "a" / "training.json").read_text())
    assert info["steps"] == 3 and info["seed"] == 3 and info["vision_steps"] == 1
    for bad in (3, -1, True):
        with pytest.raises(ValueError, match="`vision_steps`"):
            train("llava", tmp_path / "c", steps=3, vision_steps=bad, progress=False)
    with pytest.raises(ValueError, match="`aux_weight`"):
        train("llava", tmp_path / "c", steps=3, vision_steps=1, aux_weight=0, progress=False)


def test_relation_target_scores_object_tokens_only_when_asked_for():
    """With ``aux_relation`` the aux loss reads the left / above columns on object cells
    (and only there); without it those columns change nothing."""
    from vissparse.testbed.training_module import testbed_training

    model, _ = build_model("llava")
    labels = torch.zeros(2, 256, 5, dtype=torch.long)
    labels[:, :9, :2] = 1  # an object on the first cells
    tokens = torch.randn(2 * 256, model.config.text_config.hidden_size)
    losses = {}
    for on in (False, True):
        module = testbed_training(model, IMAGE_TOKEN_MODULE["llava"], 1e-3, 10, 1, 0.5,
                                   aux_relation=on)  # fmt: skip
        for name, left, background in (("none", 0, 0), ("left", 3, 0), ("bg", 0, 4)):
            changed = labels.clone()
            changed[:, :9, 3], changed[:, 100:, 4] = left, background
            module._tokens[:] = [tokens]
            losses[on, name] = float(module._aux_loss(changed))
    assert losses[False, "none"] == losses[False, "left"] == losses[False, "bg"]
    assert losses[True, "none"] != losses[True, "left"]
    assert losses[True, "none"] == losses[True, "bg"]  # background cells are not scored


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_language_model_relation_target_adds_to_the_loss(family):
    """``lm_relation`` reads the left / above colours from the image tokens' hidden
    states half-way through the LM: it adds a loss of its own to the step's."""
    from vissparse.testbed.training_module import testbed_training

    model, processor = build_model(family)
    batch = encode_training_batch(processor, make_questions(4, seed=2, split="train"))
    assert batch["token_labels"].shape[-1] == 5 and (batch["token_labels"][..., 0] > 0).any()
    losses = {}
    for on in (False, True):
        torch.manual_seed(0)  # the same auxiliary head in both
        module = testbed_training(model, IMAGE_TOKEN_MODULE[family], 1e-3, 10, 1, 0.5,
                                   lm_relation=on)  # fmt: skip
        losses[on] = float(module.training_step(dict(batch), 0))
        assert hasattr(module, "relation_head") == on and not module._hidden
    assert losses[True] > losses[False] > 0
    torch.manual_seed(0)
    later = testbed_training(model, IMAGE_TOKEN_MODULE[family], 1e-3, 10, 1, 0.5,
                             lm_relation=True, lm_relation_from=1)  # fmt: skip
    assert float(later.training_step(dict(batch), 0)) == pytest.approx(losses[False])
    type(later).global_step = property(lambda self: 1)  # type: ignore[assignment]
    assert float(later.training_step(dict(batch), 0)) == pytest.approx(losses[True])


def test_late_language_model_relation_target_starts_with_the_relation_questions(
    tmp_path, monkeypatch
):
    from vissparse.testbed import train as train_module
    from vissparse.testbed.card import _lm_relation
    from vissparse.testbed.stream import QuestionStream

    with pytest.raises(ValueError, match="lm_relation_late"):
        train("llava", tmp_path / "x", steps=2, lm_relation_late=True)
    with pytest.raises(ValueError, match="no step asks relation"):
        train("llava", tmp_path / "y", steps=2, vision_steps=1, family_ramp=1.0,
              lm_relation=True, lm_relation_late=True)  # fmt: skip
    with pytest.raises(ValueError, match="`workers` must be 0 or 1"):
        train("llava", tmp_path / "z", steps=2, workers=2)
    assert not any((tmp_path / name).exists() for name in "xyz")  # checked before mkdir
    given = []
    real = train_module.testbed_training
    monkeypatch.setattr(train_module, "testbed_training",
                        lambda *a, **k: given.append(a) or real(*a, **k))  # fmt: skip
    # 1 vision step (items 0, 1), then 6 LM items; relation questions from LM item 3 of 6,
    # the last item of step 2 (the first of that step, item 4, has none)
    train("llava", tmp_path, seed=1, steps=4, vision_steps=1, batch_size=2, warmup=1,
          workers=0, precision="32-true", progress=False, val_questions=0, family_ramp=0.5,
          lm_relation=True, lm_relation_late=True)  # fmt: skip
    stream = QuestionStream(1, warm_items=2, family_ramp=3)
    assert [("relation" in stream.families(i)) for i in range(2, 8)] == [False] * 3 + [True] * 3
    training = json.loads((tmp_path / "training.json").read_text())
    assert training["lm_relation_from"] == 2 and given[-1][-1] == 2
    assert not [w for w in train_options(training) if "lm-relation" in w]  # the defaults
    assert train_options(training | {"lm_relation_late": False})[-1] == "--no-lm-relation-late"
    assert train_options(training | {"lm_relation": False})[-1] == "--no-lm-relation"
    assert _lm_relation(training).endswith("language model's layers, from step 2")
    assert _lm_relation(training | {"lm_relation_late": False}).endswith("model's layers")


def test_card_command_rewrites_the_card_with_both_blank_checks(tmp_path, capsys):
    import csv

    from vissparse.testbed.card import plot_loss

    train("llava", tmp_path, seed=1, steps=2, vision_steps=1, batch_size=2, warmup=1, workers=0,
          precision="32-true", progress=False, val_questions=10, val_every=1)  # fmt: skip
    with open(tmp_path / "logs" / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("val/accuracy")]
    assert len(logged) == 2  # after each step; overall = the families' mean (2 each)
    for row in logged:
        shares = [float(row[f"val/accuracy/{f}"]) for f in FAMILIES]
        assert float(row["val/accuracy"]) == pytest.approx(sum(shares) / len(FAMILIES))
    assert plot_loss(tmp_path / "logs", tmp_path / "loss.png") is None  # no train/loss yet
    header = ["step", "train/loss", "val/accuracy", *(f"val/accuracy/{f}" for f in FAMILIES)]
    lines = [",".join(header), "9,2.0,,,,,,", "99,0.5,,,,,,", "99,,0.4,0.9,0.5,0.2,0.1,0.3"]
    (tmp_path / "logs" / "metrics.csv").write_text("\n".join(lines) + "\n")
    assert plot_loss(tmp_path / "logs", tmp_path / "loss.png").stat().st_size > 0
    assert cli(["testbed", "card", "--model", str(tmp_path), "--n", "10"]) == 0
    evaluation = json.loads((tmp_path / "card_eval.json").read_text())
    assert evaluation["n"] == 10 and evaluation["unpruned"][0]["n"] == 10
    assert {r["family"] for r in evaluation["blank"]} == set(FAMILIES)
    assert all(0 <= r["blank_forced"] <= 1 for r in evaluation["blank"])
    by_count = evaluation["counting_by_answer"]
    counting = next(r for r in evaluation["unpruned"] if r["family"] == "counting")
    assert sum(r["n"] for r in by_count) == counting["n"] > 0
    assert sum(r["n"] * r["accuracy"] for r in by_count) == pytest.approx(
        counting["n"] * counting["accuracy"]
    )
    card = (tmp_path / "README.md").read_text()
    assert "forced choice" in card and card in capsys.readouterr().out
    assert "Counting accuracy (%) by the true count: " in card
    relation = next(r for r in evaluation["unpruned"] if r["family"] == "relation")
    wrong = sum(evaluation["relation_errors"].values())
    assert wrong == round(relation["n"] * (1 - relation["accuracy"]))
    assert f"Wrong relation answers ({wrong})" in card or not wrong
    assert cli(["testbed", "card", "--model", str(tmp_path / "missing")]) == 2
    assert "no training.json" in capsys.readouterr().err
    training = json.loads((tmp_path / "training.json").read_text())
    head, _, row = runs_table([("tiny", training, evaluation)]).splitlines()
    assert head.split(" | ")[-len(FAMILIES) :] == [*FAMILIES[:-1], FAMILIES[-1] + " |"]
    where = f"{training['machine']['cpu_model'] or 'CPU'}, {training['machine']['cpu_count']} cores"
    options = "--vision-steps 1 --batch-size 2 --warmup 1 --precision 32-true --no-lm-relation"
    assert row.startswith(f"| tiny | llava | 2 | 0.0015 | 1 | {options} | {where} | ")
    command = f"vissparse testbed train --family llava --out DIR --seed 1 --steps 2 {options}"
    assert f"- Command: `{command}`\n" in card  # the command that repeats this run
    training |= {"aux_key": True, "aux_relation": True, "family_weights": {"counting": 3}}
    options = options.replace(" --no-lm-relation", " --aux-key --aux-relation --no-lm-relation")
    options += " --family-weight counting=3"
    assert f" | {options} | " in runs_table([("tiny", training, evaluation)])
    assert (
        "the colour of the object left of and above"
        in write_card(tmp_path, training, evaluation).read_text()
    )
    training |= {"accelerator": "gpu", "machine": {"gpu": "Some GPU"}}
    assert "| Some GPU |" in runs_table([("tiny", training, evaluation)])


def test_answer_words_must_be_one_token():
    def split_in_two(word, add_special_tokens=False):
        return {"input_ids": [1, 2]}

    with pytest.raises(ValueError, match="one token"):
        answer_token_ids(split_in_two)


def test_stats():
    lo, hi = bootstrap_ci(np.array([1.0] * 90 + [0.0] * 10))
    assert lo < 0.9 < hi and hi - lo < 0.15
    same = paired_bootstrap(np.ones(50), np.ones(50))
    assert same["p_value"] == 1.0
    better = paired_bootstrap(np.array([1.0] * 40 + [0.0] * 10), np.array([0.0] * 25 + [1.0] * 25))
    assert better["diff"] == pytest.approx(0.3) and better["p_value"] < 0.01
    assert chance_accuracy("counting") == pytest.approx(0.1)


def test_run_scorers_rows(saved_untrained):
    from vissparse.testbed.evaluate import load_testbed_model

    model, processor = load_testbed_model(saved_untrained)
    questions = make_questions(10, seed=0)
    runs = run_scorers(model, processor, questions, ["cosine", "random"], (0.1, 1.0),
                       random_seeds=(0, 1), batch_size=5, progress=False)  # fmt: skip
    rows = summarize("llava", runs, questions)
    at = {(r["scorer"], r["keep_ratio"], r["family"]): r for r in rows}
    assert at[("cosine", 0.1, "all")]["image_tokens"] == pytest.approx(26)  # ceil(0.1 * 256)
    assert at[("cosine", 1.0, "all")]["image_tokens"] == 256
    assert len(at[("random", 0.1, "all")]["seed_accuracy"]) == 2
    assert "vs_random_p_value" in at[("cosine", 0.1, "all")]
    assert at[("cosine", 1.0, "all")]["accuracy"] == at[("random", 1.0, "all")]["accuracy"]


def test_llm_methods_run_at_equal_average_tokens(saved_untrained):
    from vissparse.testbed.evaluate import load_testbed_model

    model, processor = load_testbed_model(saved_untrained)
    questions = make_questions(6, seed=0)
    runs = run_scorers(model, processor, questions, ["fastv", "pdrop", "random"],
                       (0.1, 0.5), random_seeds=(0,), batch_size=3, progress=False)  # fmt: skip
    rows = summarize("llava", runs, questions)
    at = {(r["scorer"], r["keep_ratio"]): r for r in rows if r["family"] == "all"}
    assert ("fastv", 0.1) not in at and ("random", 0.1) in at  # 1 of 4 layers sees all 256
    fastv, pdrop = at[("fastv", 0.5)], at[("pdrop", 0.5)]
    assert fastv["schedule"] == [[1, fastv["final_keep_ratio"]]]
    assert [layer for layer, _ in pdrop["schedule"]] == [1, 2, 3]
    for row in (fastv, pdrop):  # the same image tokens per layer as keep 0.5 before the LM
        assert row["stage"] == "llm"
        assert row["image_tokens"] == pytest.approx(0.5 * 256, abs=2)
        assert "vs_random_p_value" in row


def test_eval_cli_writes_tables_and_plot(saved_untrained, tmp_path, capsys):
    code = cli(["testbed", "eval", "--model", str(saved_untrained), "--out", str(tmp_path),
                "--n", "10",
                "--scorer", "cosine", "--scorer", "random", "--keep-ratio", "0.25",
                "--random-seeds", "2"])  # fmt: skip
    assert code == 0
    for name in ("testbed_eval.csv", "testbed_eval.json", "testbed_blank.csv",
                 "testbed_accuracy.png"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    payload = json.loads((tmp_path / "testbed_eval.json").read_text())
    assert payload["n_questions"] == 10 and payload["machine"]["cpu_count"]
    blank = json.loads((tmp_path / "testbed_blank.json").read_text())["results"]
    assert all("blank_forced" in r and r["forced_ci_low"] <= r["blank_forced"] for r in blank)
    assert "keep 0.25" in capsys.readouterr().out


def test_language_model_waits_for_the_vision_stage():
    from vissparse.testbed.training_module import _is_lm, _schedule

    lm = _schedule(start=5, steps=20, warmup=2)
    assert [lm(s) for s in (0, 4, 5, 6)] == [0.0, 0.0, 0.5, 1.0]
    assert lm(19) > lm(20) == pytest.approx(0.05)
    assert _schedule(0, 20, 2)(0) == 0.5
    model, _ = build_model("llava")
    names = [f"model.{n}" for n, _ in model.named_parameters()]
    lm_names = [n for n in names if _is_lm(n)]
    assert lm_names and all("vision_tower" not in n and "projector" not in n for n in lm_names)
    assert any("embed_tokens" in n for n in lm_names) and len(lm_names) < len(names)


def test_curves_table_compares_runs_with_the_shipped_one(tmp_path):
    from vissparse.testbed.report import curves_table, read_metrics

    path = tmp_path / "metrics.csv"
    header = ["epoch", "step", "train/loss", "val/accuracy", "val/accuracy/position"]
    path.write_text("\n".join([",".join(header), "0,9,2.0,,", "0,99,,0.25,0.5", ""]))
    run = read_metrics(path)
    assert run == {(9, "train/loss"): 2.0, (99, "val/accuracy"): 0.25,
                   (99, "val/accuracy/position"): 0.5}  # fmt: skip
    ref = {(9, "train/loss"): 2.0, (99, "val/accuracy"): 0.3, (199, "val/accuracy"): 0.4}
    lines = curves_table([("shipped llava", "llava", ref), ("r", "llava", run)]).splitlines()
    assert lines[0] == "| run | family | equal to shipped | 99 | 199 |"
    assert lines[2:] == ["| shipped llava | all |  | 30 | 40 |", "| r | all | 1 of 2 | 25 |  |",
                         "| r | position |  | 50 |  |"]  # fmt: skip
    earlier = dict(run)  # a run shipped before: a rerun of it is compared with it
    runs = [("shipped llava", "llava", ref), ("old", "llava", earlier), ("r", "llava", run)]
    lines = curves_table(runs, {"r": "old"}).splitlines()
    assert lines[-2] == "| r | all | 2 of 2 of old | 25 |  |"
    with pytest.raises(ValueError, match="`references` names 'gone'"):
        curves_table(runs, {"r": "gone"})
