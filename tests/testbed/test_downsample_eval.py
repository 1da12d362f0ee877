"""The testbed's downsample rows: honest token counts, and no row on fixed-size LLaVA."""

import numpy as np

from vissparse.testbed import make_questions
from vissparse.testbed.evaluate import run_scorers
from vissparse.testbed.models import build_model


def test_downsample_rows_count_the_full_size_images_tokens():
    # the testbed Qwen2-VL's processor pins every image to 128 x 128 (min = max pixels):
    # downsampling must lower that minimum or the encoder would see the full image again
    model, processor = build_model("qwen2_vl", seed=5)
    questions = make_questions(4, seed=0)
    runs = run_scorers(model, processor, questions, ["random", "downsample"], (0.25,),
                       random_seeds=(0,), batch_size=4, progress=False)  # fmt: skip
    down = {run.scorer: run for run in runs}["downsample"]
    assert np.array_equal(down.n_image, np.full(4, 256.0))  # 16 x 16 tokens at 128 x 128
    assert np.array_equal(down.n_kept, np.full(4, 64.0))  # 8 x 8 tokens at 64 x 64


def test_llava_has_no_downsample_row():
    model, processor = build_model("llava", seed=5)
    questions = make_questions(2, seed=0)
    runs = run_scorers(model, processor, questions, ["random", "downsample"], (0.25, 1.0),
                       random_seeds=(0,), batch_size=2, progress=False)  # fmt: skip
    assert [(r.scorer, r.keep_ratio) for r in runs] == [
        ("random", 0.25), ("random", 1.0), ("downsample", 1.0)
    ]  # fmt: skip
