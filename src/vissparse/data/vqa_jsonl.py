"""``VQAJsonlDataset``: a JSONL file of ``{"image", "question", "answer"}`` lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vissparse.hf.inputs import load_image


class VQAJsonlDataset(Dataset):
    """Visual question answering samples from a JSONL file.

    Each line is ``{"image": path, "question": str, "answer": str}``; image paths are
    relative to the file. Lines are checked when the dataset is built (valid JSON, the
    three keys, each a string, the image file exists); an image that cannot be read
    fails when loaded.
    Every error names the file and the line.

    Example:
        >>> import tempfile
        >>> from vissparse.testing import random_image
        >>> root = Path(tempfile.mkdtemp())
        >>> random_image().save(root / "a.png")
        >>> line = '{"image": "a.png", "question": "Q?", "answer": "A"}'
        >>> _ = (root / "qa.jsonl").write_text(line)
        >>> VQAJsonlDataset(root / "qa.jsonl")[0]["question"]
        'Q?'
    """

    KEYS = ("image", "question", "answer")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"`path` {str(self.path)!r} is not a file")
        self.rows: list[tuple[int, dict[str, Any]]] = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or any(k not in row for k in self.KEYS):
                raise ValueError(f"{where}: expected an object with keys {list(self.KEYS)}")
            for key in self.KEYS:
                if not isinstance(row[key], str):
                    raise ValueError(
                        f'{where}: "{key}" must be a string, got {json.dumps(row[key])} '
                        "(one reference answer per line; no null, number or list)"
                    )
            image = self.path.parent / row["image"]
            if not image.is_file():
                raise FileNotFoundError(f"{where}: image {str(image)!r} does not exist")
            self.rows.append((number, {**row, "image": image}))
        if not self.rows:
            raise ValueError(f"`path` {str(self.path)!r} holds no samples")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        number, row = self.rows[index]
        try:
            image = load_image(row["image"])
        except ValueError as err:
            raise ValueError(f"{self.path}:{number}: {err}") from None
        return {"image": image, "question": row["question"], "answer": row["answer"],
                "index": index}  # fmt: skip
