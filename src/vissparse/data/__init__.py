"""VQA data for evaluation: JSONL files, mock samples, collation and a data module."""

from vissparse.data.mock_vqa import MockVQADataset
from vissparse.data.module import VQADataModule, collate_vqa
from vissparse.data.vqa_jsonl import VQAJsonlDataset

__all__ = ["MockVQADataset", "VQADataModule", "VQAJsonlDataset", "collate_vqa"]
