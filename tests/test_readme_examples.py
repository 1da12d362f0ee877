"""The README's own-scorer examples run as written."""

import re
from pathlib import Path

from vissparse import VisSparse
from vissparse.strategies import SCORERS
from vissparse.testing import random_image, tiny_model

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def test_context_scorer_example_keeps_the_centre_of_the_grid():
    exec(readme_block("class CentreScorer"), {})
    try:
        model, processor = tiny_model("qwen2_vl")
        pipe = VisSparse(base_model=model, processor=processor, keep_ratio=0.05, scorer="centre")
        details = pipe.generate(image=random_image(84, 140), prompt="Where?", max_new_tokens=1,
                                return_details=True)  # fmt: skip
        keep = details.keep_mask[0]  # a 3 x 5 merged grid: one token, the centre (1, 2)
        assert keep.nonzero().flatten().tolist() == [7]
    finally:
        SCORERS._classes.pop("centre", None)


def test_own_scorer_example_registers_and_runs():
    exec(readme_block("class NormScorer"), {})
    try:
        results = VisSparse(base_model="mock", mock=True, scorer="norm").benchmark(
            n_samples=2, progress=False
        )
        assert results["n_samples"] == 2 and results["n_kept"] < results["n_image_tokens"]
    finally:
        SCORERS._classes.pop("norm", None)
