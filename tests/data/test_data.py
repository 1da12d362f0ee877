import json

import pytest
import torch

from vissparse.data import MockVQADataset, VQADataModule, VQAJsonlDataset, collate_vqa
from vissparse.testing import random_image


def write_jsonl(root, rows):
    path = root / "qa.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_dataset_reads_relative_paths(tmp_path):
    (tmp_path / "imgs").mkdir()
    random_image(seed=1).save(tmp_path / "imgs" / "a.png")
    path = write_jsonl(tmp_path, [{"image": "imgs/a.png", "question": "Q?", "answer": "yes"}, ""])
    ds = VQAJsonlDataset(path)
    assert len(ds) == 1
    item = ds[0]
    assert item["answer"] == "yes" and item["image"].size == (80, 64) and item["index"] == 0


def test_jsonl_errors_name_the_line(tmp_path):
    random_image().save(tmp_path / "a.png")
    good = {"image": "a.png", "question": "Q?", "answer": "A"}
    with pytest.raises(FileNotFoundError, match=r"qa.jsonl:2: image .*missing.png"):
        VQAJsonlDataset(write_jsonl(tmp_path, [good, {**good, "image": "missing.png"}]))
    with pytest.raises(ValueError, match=r"qa.jsonl:3: not valid JSON"):
        VQAJsonlDataset(write_jsonl(tmp_path, [good, good, "{oops"]))
    with pytest.raises(ValueError, match=r"qa.jsonl:1: expected an object with keys"):
        VQAJsonlDataset(write_jsonl(tmp_path, [{"image": "a.png"}]))
    (tmp_path / "bad.png").write_bytes(b"garbage")
    ds = VQAJsonlDataset(write_jsonl(tmp_path, [good, {**good, "image": "bad.png"}]))
    with pytest.raises(ValueError, match=r"qa.jsonl:2: .*cannot be read"):
        ds[1]


@pytest.mark.parametrize(
    ("key", "value"),
    [("answer", None), ("question", None), ("answer", ["cat", "kitty"]), ("answer", 3),
     ("image", 7)],
)  # fmt: skip
def test_jsonl_fields_must_be_strings(tmp_path, key, value):
    random_image().save(tmp_path / "a.png")
    good = {"image": "a.png", "question": "Q?", "answer": "A"}
    path = write_jsonl(tmp_path, [good, {**good, key: value}])
    with pytest.raises(ValueError, match=rf'qa.jsonl:2: "{key}" must be a string'):
        VQAJsonlDataset(path)


def test_mock_dataset_and_collate():
    ds = MockVQADataset(5, seed=3, dim=32, n_tokens=64)
    batch = collate_vqa([ds[i] for i in range(3)])
    assert len(batch["images"]) == 3 and batch["images"][0].shape == (64, 32)
    assert batch["index"].tolist() == [0, 1, 2]
    assert torch.equal(MockVQADataset(5, seed=3, dim=32, n_tokens=64)[4]["image"], ds[4]["image"])


def test_datamodule_loaders():
    dm = VQADataModule.mock(7, batch_size=3, dim=32, n_tokens=64)
    batches = list(dm.val_dataloader())
    assert [len(b["questions"]) for b in batches] == [3, 3, 1]
    assert len(list(dm.predict_dataloader())) == 3
    with pytest.raises(ValueError, match="batch_size"):
        VQADataModule(MockVQADataset(2, dim=32, n_tokens=64), batch_size=0)


def test_too_few_samples_for_the_processes():
    from types import SimpleNamespace as NS

    dm = VQADataModule.mock(1, batch_size=1, dim=32, n_tokens=64)
    dm.trainer = NS(world_size=2, global_rank=0)
    with pytest.raises(ValueError, match="1 samples cannot be shared by 2 processes"):
        dm.val_dataloader()
