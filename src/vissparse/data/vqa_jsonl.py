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
    relative to the file. Every record is checked when the dataset is built: UTF-8 text
    (a leading byte-order mark is allowed), valid JSON, an object with the three keys,
    each a non-blank string, and an image file that exists; blank lines are skipped. An
    image that cannot be read fails when loaded. Every error names the file and the line.

    Example:
        >>> import tempfile
        >>> from vissparse.testing import random_image
        >>> root = Path(tempfile.mkdtemp())
        >>> random_image().save(root / "a.png")
        >>> line = '{"image": "a.png", "question": "Q?", "answer": "A"}'
        >>> _ = (root / "qa.jsonl").write_text(line)
        >>> VQAJsonlDataset(root / "qa.jsonl")[0]["question"]
        'Q?'
        >>> _ = (root / "qa.jsonl").write_text(line.replace("Q?", " "))
        >>> VQAJsonlDataset(root / "qa.jsonl")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...qa.jsonl:1: "question" is empty; expected a question
    """

    KEYS = ("image", "question", "answer")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"`path` {str(self.path)!r} is not a file")
        self.rows: list[tuple[int, dict[str, Any]]] = []
        for number, line in enumerate(_lines(self.path), start=1):
            if not line.strip():
                continue
            self.rows.append((number, self._record(line, f"{self.path}:{number}")))
        if not self.rows:
            raise ValueError(f"`path` {str(self.path)!r} holds no samples")

    def _record(self, line: str, where: str) -> dict[str, Any]:
        """One checked record, its image path made absolute."""
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
            if not row[key].strip():
                raise ValueError(f'{where}: "{key}" is empty; expected {_EXPECTED[key]}')
        image = self.path.parent / row["image"]
        if not image.is_file():
            problem = "is a folder, not a file" if image.is_dir() else "does not exist"
            raise FileNotFoundError(f"{where}: image {str(image)!r} {problem}")
        return {**row, "image": image}

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


_EXPECTED = {
    "image": "an image path relative to the file",
    "question": "a question",
    "answer": "the reference answer",
}


def _lines(path: Path) -> list[str]:
    r"""The file's lines, decoded as UTF-8 one by one, so a bad byte names its line.

    Only ``\n`` ends a line (JSON Lines): ``str.splitlines`` would also split inside a
    string at U+2028, U+0085 and other characters that JSON allows unescaped.
    """
    lines = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
        try:
            lines.append(raw.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError as err:
            hint = "; it looks like UTF-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
            raise ValueError(
                f"{path}:{number}: not UTF-8 text (byte 0x{raw[err.start]:02x} at byte "
                f"{err.start + 1} of the line){hint}; save the file as UTF-8"
            ) from None
    return lines
