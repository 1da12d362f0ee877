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
