r"""A local lmms-eval task over exported testbed questions (no hub, no download).

``write_task`` exports ``n`` held-out testbed questions (the ones ``vissparse testbed
eval --n N --seed S`` answers: :func:`~vissparse.testbed.questions.make_questions`) as
PNG files plus a JSONL, and next to them a task YAML and its ``utils.py``. The task asks
each question as ``testbed eval`` does (the bare question; the model's chat template is
applied by the model), decodes greedily for ``MAX_NEW_TOKENS`` tokens, and scores with
``testbed eval``'s rule (:func:`~vissparse.bench.paired.exact_match`, normalised exact
match), so its ``accuracy`` equals ``testbed eval``'s on the same questions and settings::

    python -m vissparse.lmms.task --n 1000 --out testbed_task
    lmms-eval --model vissparse \
        --model_args pretrained=CHECKPOINT,keep_ratio=0.1,scorer=divprune \
        --include_path testbed_task --tasks vissparse_testbed --batch_size 50

where ``CHECKPOINT`` is a testbed checkpoint folder, for a shipped one
``python -c "from vissparse.testbed.checkpoints import checkpoint_dir as c; print(c('llava'))"``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp())
    >>> yaml_path = write_task(out, n=2)
    >>> yaml_path.name
    'vissparse_testbed.yaml'
    >>> sorted(p.name for p in out.iterdir())
    ['images', 'questions.jsonl', 'utils.py', 'vissparse_testbed.yaml']
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vissparse.bench.paired import exact_match
from vissparse.testbed.evaluate import MAX_NEW_TOKENS

TASK = "vissparse_testbed"

_YAML = """\
# Written by `python -m vissparse.lmms.task`: {n} testbed questions (seed {seed}, split
# {split}), scored as `vissparse testbed eval` scores them. Run it with
#   lmms-eval --model vissparse --model_args pretrained=DIR,keep_ratio=0.1 \\
#       --include_path {folder} --tasks {task}
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: {max_new_tokens}
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.0
"""

_UTILS = '''\
"""The {task} task's functions (written by `python -m vissparse.lmms.task`)."""

from pathlib import Path

from PIL import Image

from vissparse.lmms.task import process_results  # noqa: F401  (the YAML names it here)

ROOT = Path(__file__).resolve().parent


def doc_to_visual(doc):
    """The question's image (its path is relative to this folder)."""
    return [Image.open(ROOT / doc["image"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """The bare question, as `vissparse testbed eval` asks it."""
    return doc["question"]
'''


def process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, float]:
    """``{"accuracy": 1.0}`` where the answer matches the reference as ``testbed eval``'s.

    Example:
        >>> process_results({"answer": "red"}, ["Red."])
        {'accuracy': 1.0}
    """
    return {"accuracy": float(exact_match(results[0], doc["answer"]))}


def write_task(out: str | os.PathLike[str], n: int, seed: int = 0, split: str = "test") -> Path:
    """Export ``n`` questions to ``out`` with the task's YAML and utils; the YAML's path."""
    from vissparse.testbed.questions import export_questions, make_questions

    root = Path(out).resolve()
    data = export_questions(make_questions(n, seed, split), root)
    (root / "utils.py").write_text(_UTILS.format(task=TASK))
    path = root / f"{TASK}.yaml"
    text = _YAML.format(n=n, seed=seed, split=split, folder=root, task=TASK,
                        data=json.dumps(str(data)), max_new_tokens=MAX_NEW_TOKENS)  # fmt: skip
    path.write_text(text)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vissparse.lmms.task --n N --out DIR [--seed S] [--split test]``."""
    from vissparse.cli_support import integer, positive_int

    parser = argparse.ArgumentParser(prog="python -m vissparse.lmms.task", description=__doc__
                                     .split("\n\n")[0])  # fmt: skip
    parser.add_argument("--n", type=positive_int, required=True, help="questions")
    parser.add_argument("--seed", type=integer, default=0, help="seed of the questions")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--out", required=True, help="folder for the task and its files")
    args = parser.parse_args(argv)
    path = write_task(args.out, args.n, args.seed, args.split)
    print(f"wrote {path}: lmms-eval --include_path {path.parent} --tasks {TASK} ...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
