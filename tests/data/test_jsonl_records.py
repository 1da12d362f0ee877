"""Every JSONL record is checked when the dataset is built; errors name file:line."""

import json

import pytest

from vissparse.data import VQAJsonlDataset
from vissparse.testing import random_image

GOOD = {"image": "a.png", "question": "Q?", "answer": "A"}


@pytest.fixture
def root(tmp_path):
    random_image().save(tmp_path / "a.png")
    (tmp_path / "folder").mkdir()
    return tmp_path


def write(root, data: bytes):
    path = root / "qa.jsonl"
    path.write_bytes(data)
    return path


def line(row) -> bytes:
    return json.dumps(row, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("bad", "message"),
    [({**GOOD, "question": ""}, '"question" is empty'),
     ({**GOOD, "question": " \t\n"}, '"question" is empty'),
     ({**GOOD, "answer": ""}, '"answer" is empty'),
     ({**GOOD, "image": ""}, '"image" is empty'),
     ({**GOOD, "image": "  "}, '"image" is empty'),
     ({**GOOD, "question": ["Q?"]}, '"question" must be a string'),
     ({**GOOD, "question": {"text": "Q?"}}, '"question" must be a string'),
     ({**GOOD, "answer": True}, '"answer" must be a string'),
     ({**GOOD, "answer": 2.5}, '"answer" must be a string'),
     ({"image": "a.png", "question": "Q?"}, "expected an object with keys"),
     (["a.png", "Q?", "A"], "expected an object with keys"),
     ("just a string", "expected an object with keys")],
)  # fmt: skip
def test_bad_records_are_refused_at_construction_with_file_and_line(root, bad, message):
    path = write(root, b"\n".join([line(GOOD), b"", b"  ", line(bad), line(GOOD)]))
    with pytest.raises(ValueError, match=rf"qa.jsonl:4: {message}") as info:
        VQAJsonlDataset(path)
    assert "\n" not in str(info.value)


def test_image_that_is_a_folder(root):
    path = write(root, line({**GOOD, "image": "folder"}))
    with pytest.raises(FileNotFoundError, match=r"qa.jsonl:1: image .*folder' is a folder"):
        VQAJsonlDataset(path)


def test_non_utf8_file_names_the_line(root):
    """The issue's repro: Latin-1 bytes gave a raw UnicodeDecodeError, no file or line."""
    latin1 = json.dumps({**GOOD, "question": "Qu'est-ce que c'est, café?"}, ensure_ascii=False)
    path = write(root, line(GOOD) + b"\n" + latin1.encode("latin-1") + b"\n")
    with pytest.raises(ValueError, match=r"qa.jsonl:2: not UTF-8 text \(byte 0xe9 at byte \d+"):
        VQAJsonlDataset(path)
    path = write(root, (line(GOOD).decode() + "\n").encode("utf-16"))
    with pytest.raises(ValueError, match=r"qa.jsonl:1: not UTF-8 .*looks like UTF-16"):
        VQAJsonlDataset(path)


def test_utf8_with_bom_crlf_and_separators_inside_strings(root):
    # U+2028, U+2029 and U+0085 are legal unescaped in JSON strings; only \n ends a line
    question = "What\u2028is\u2029this\x85thing, café?"
    rows = [line(GOOD), line({**GOOD, "question": question})]
    path = write(root, b"\xef\xbb\xbf" + b"\r\n".join(rows) + b"\r\n")
    ds = VQAJsonlDataset(path)
    assert len(ds) == 2 and ds[0]["question"] == "Q?" and ds[1]["question"] == question
    assert ds.rows[1][0] == 2  # line numbers count \n-terminated lines
