"""The lmms-eval plugin's pure parts: model_args, batching, stop strings, sample rows.

No lmms-eval needed: these run in the main environment too.
"""

import json
from types import SimpleNamespace as NS

import pytest
import torch

from vissparse.lmms import CLASS_PATH, MODEL_ID
from vissparse.lmms.args import parse_layer, parse_schedule, plugin_settings
from vissparse.lmms.batching import cut_at_stops, generate_kwargs, request_batches, stop_strings
from vissparse.lmms.sample_log import append_rows, sample_rows, summary


def test_model_args_reach_vissparse_converted():
    s = plugin_settings(pretrained="dir", keep_ratio=0.1, scorer="fastv", stage="llm",
                        layer="[8,16,24]", dtype="bfloat16", batch_size="4", device="cpu",
                        max_batch_size=None, sample_log="out/s.jsonl")  # fmt: skip
    assert s.vissparse == {"base_model": "dir", "keep_ratio": 0.1, "scorer": "fastv",
                           "stage": "llm", "layer": (8, 16, 24), "dtype": "bfloat16",
                           "device": "cpu"}  # fmt: skip
    assert (s.batch_size, s.sample_log) == (4, "out/s.jsonl")
    assert plugin_settings(pretrained="d", schedule="[[2,0.5],[3,0.25]]").vissparse["schedule"] == (
        (2, 0.5),
        (3, 0.25),
    )


def test_device_map_wins_over_lmms_eval_device():
    s = plugin_settings(pretrained="d", device_map="auto", device="cuda")
    assert "device" not in s.vissparse and s.vissparse["device_map"] == "auto"


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ({}, ValueError, "`pretrained` is required"),
        ({"pretrained": "d", "keeps": 1}, TypeError, r"unknown --model_args \['keeps'\]"),
        ({"pretrained": "d", "batch_size": "auto"}, ValueError, "`batch_size` must be"),
        ({"pretrained": "d", "batch_size": 0}, ValueError, "`batch_size` must be"),
        ({"pretrained": "d", "keep_ratio": "lots"}, ValueError, "`keep_ratio` must be"),
        ({"pretrained": "d", "max_new_tokens": -1}, ValueError, "`max_new_tokens` must be"),
    ],
)
def test_bad_model_args_name_the_argument(args, error, match):
    with pytest.raises(error, match=match):
        plugin_settings(**args)


@pytest.mark.parametrize("bad", ["[]", "[1.5]", "x", "[true]"])
def test_bad_layer(bad):
    with pytest.raises(ValueError, match="`layer` must be"):
        parse_layer(bad)


@pytest.mark.parametrize("bad", ["[]", "[[1]]", "[[1,0.5,2]]", "[[0.5,1]]", "{}"])
def test_bad_schedule(bad):
    with pytest.raises(ValueError, match="`schedule` must be"):
        parse_schedule(bad)


def _req(i, task="t", gen=None):
    return (f"q{i}", gen if gen is not None else {"max_new_tokens": 2}, None, i, task, "test")


def test_batches_keep_request_order_and_split_only_where_needed():
    reqs = [_req(i) for i in range(5)] + [_req(5, task="u"), _req(6), _req(7, gen={"a": 1})]
    assert list(request_batches(reqs, 3)) == [[0, 1, 2], [3, 4, 6], [5], [7]]
    assert list(request_batches(reqs, 100)) == [[0, 1, 2, 3, 4, 6], [5], [7]]


def test_generation_settings():
    assert generate_kwargs({}, 7) == {"max_new_tokens": 7, "do_sample": False}
    assert generate_kwargs({"temperature": 0, "top_p": 0.5, "num_beams": 1}, 7) == {
        "max_new_tokens": 7, "do_sample": False}  # fmt: skip
    assert generate_kwargs({"num_beams": 3}, 7)["num_beams"] == 3
    assert stop_strings({"until": ["\n\n", "USER:"]}) == ["\n\n", "USER:"]
    with pytest.raises(TypeError, match="`until`"):
        stop_strings({"until": 3})
    assert cut_at_stops("blue USER: hi\n\nmore", ["\n\n", "USER:"]) == "blue "


def test_sample_rows_count_like_testbed_eval(tmp_path):
    masks = [[torch.tensor([True, True, False, False])],
             [torch.tensor([True, False]), torch.tensor([False, False, True, True])]]  # fmt: skip
    details = NS(keep_mask=masks, metrics={"latency_ms": 30.0}, text=["a", "b"])
    rows = sample_rows(details, [("t", 0), ("t", 5)])
    assert [(r["doc_id"], r["image_tokens"], r["kept_tokens"]) for r in rows] == [
        (0, 4, 2.0), (5, 6, 3.0)]  # fmt: skip
    assert [r["effective_keep_ratio"] for r in rows] == [0.5, 0.5]
    assert {r["latency_ms"] for r in rows} == {30.0} and {r["batch_size"] for r in rows} == {2}
    # stage="llm": the count is the average over layers of the image tokens per layer
    details.metrics["image_tokens_per_layer"] = [[4, 4, 1, 1], [6, 6, 3, 3]]
    rows = sample_rows(details, [("t", 0), ("t", 5)])
    assert [r["kept_tokens"] for r in rows] == [2.5, 4.5]
    want = {"samples": 2, "image_tokens": 10, "kept_tokens": 7.0, "effective_keep_ratio": 0.7,
            "latency_ms_per_sample": 15.0}  # fmt: skip
    assert summary(rows) == want
    path = tmp_path / "logs" / "samples.jsonl"
    append_rows(path, rows)
    append_rows(path, rows[:1])
    assert [json.loads(line)["doc_id"] for line in path.read_text().splitlines()] == [0, 5, 0]


def test_manifest_names_the_model_class():
    assert MODEL_ID == "vissparse"
    module, name = CLASS_PATH.rsplit(".", 1)
    assert module == "vissparse.lmms.model" and name == "VisSparseLMM"
