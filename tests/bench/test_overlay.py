import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vissparse import VisSparse
from vissparse.adapters.base import TokenGrid
from vissparse.bench.overlay import _outline, render_overlay
from vissparse.testing import random_image, tiny_model

HF_FAMILIES = ("qwen2_vl", "llava", "llava_next")


@pytest.fixture(scope="module")
def mock_vs():
    return VisSparse(base_model="mock", mock=True, keep_ratio=0.25, dim=32, n_tokens=64)


@pytest.fixture(scope="module", params=HF_FAMILIES)
def hf_vs(request):
    model, processor = tiny_model(request.param)
    return VisSparse(base_model=model, processor=processor, keep_ratio=0.25)


def png_size(path):
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


# --- mock ----------------------------------------------------------------------------------
def test_mock_sample_one_panel_per_prompt(mock_vs, tmp_path):
    sample = mock_vs.pipeline.samples(1)[0]
    one = render_overlay(mock_vs, sample, sample.prompt, tmp_path / "one.png")
    two = render_overlay(mock_vs, sample, [sample.prompt, "Is there a dog?"], tmp_path / "two.png")
    assert one == tmp_path / "one.png" and one.is_file() and two.is_file()
    (w1, h1), (w2, h2) = png_size(one), png_size(two)
    assert w2 > 1.8 * w1 and h2 == h1


def test_mock_token_tensor_and_missing_parent(mock_vs, tmp_path):
    tokens = mock_vs.pipeline.samples(1, seed=3)[0].image_tokens
    out = render_overlay(mock_vs, tokens, ["What color is the car?"], tmp_path / "a" / "b.png")
    assert out.is_file()


def test_mock_rejects_bad_images(mock_vs, tmp_path):
    with pytest.raises(TypeError, match="MockSample"):
        render_overlay(mock_vs, random_image(), "What is it?", tmp_path / "x.png")
    with pytest.raises(ValueError, match="square"):
        render_overlay(mock_vs, torch.zeros(10, 32), "What is it?", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\[N, 32\]"):  # the pipeline checks the width
        render_overlay(mock_vs, torch.zeros(64, 8), "What is it?", tmp_path / "x.png")


@pytest.mark.parametrize("prompts", [[], "", "   ", ["ok", ""], ["ok", 3], None, 7])
def test_prompts_must_be_non_empty_strings(mock_vs, tmp_path, prompts):
    with pytest.raises(ValueError, match="`prompts`"):
        render_overlay(mock_vs, mock_vs.pipeline.samples(1)[0], prompts, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_out_path_must_be_png(mock_vs, tmp_path):
    with pytest.raises(ValueError, match="`out_path`"):
        render_overlay(mock_vs, mock_vs.pipeline.samples(1)[0], "Hi?", tmp_path / "x.jpg")


def test_missing_matplotlib_says_how_to_install(mock_vs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"vissparse\[plot\]"):
        render_overlay(mock_vs, mock_vs.pipeline.samples(1)[0], "Hi?", tmp_path / "x.png")


def test_outline_traces_the_boundary_of_kept_cells():
    mask = np.array([[True, True, False], [False, True, False]])
    segments = _outline(mask, cell_w=2.0, cell_h=1.0)
    assert len(segments) == 8  # an L of three cells has a perimeter of 8 cell edges
    assert [(0.0, 0.0), (0.0, 1.0)] in segments  # left edge of the top-left cell
    assert _outline(np.zeros((2, 2), dtype=bool), 1.0, 1.0) == []


# --- HF families ---------------------------------------------------------------------------
def test_hf_one_panel_per_prompt(hf_vs, tmp_path):
    image = random_image(84, 112)
    one = render_overlay(hf_vs, image, ["What is it?"], tmp_path / "one.png")
    prompts = ["What is it?", "Where is the $5 bill?"]
    two = render_overlay(hf_vs, image, prompts, tmp_path / "two.png")
    (w1, h1), (w2, h2) = png_size(one), png_size(two)
    assert w2 > 1.8 * w1 and h2 == h1


def test_hf_image_from_path(hf_vs, tmp_path):
    random_image(70, 50, seed=2).save(tmp_path / "img.png")
    assert render_overlay(hf_vs, tmp_path / "img.png", "Hi?", tmp_path / "out.png").is_file()


@pytest.mark.parametrize("size", [(112, 112), (84, 112), (112, 56)])
def test_token_grid_matches_image_tokens(hf_vs, size):
    pipe = hf_vs.pipeline
    images = [random_image(*size), random_image(56, 84, seed=1)]  # two images, one prompt
    inputs, _, _, _ = pipe._encode(images, "Compare them.")
    emb = pipe.adapter.embed(inputs)
    for i, positions in enumerate(emb.image_positions):
        grid = pipe.adapter.token_grid(inputs, i)
        assert isinstance(grid, TokenGrid)
        if pipe.adapter.spec.layout == "base_tile":
            vision = pipe.model.config.vision_config
            side = vision.image_size // vision.patch_size
            assert (grid.rows, grid.cols, grid.label) == (side, side, "base tile")
            assert grid.start + grid.n_tokens < positions.numel()
            scorable = emb.scorable[i]
            assert bool(scorable[: grid.n_tokens].all())  # no newline token in the base tile
            assert not bool(scorable[grid.n_tokens :].all())  # the anyres rows have newlines
        else:
            assert grid.start + grid.rows * grid.cols == positions.numel()
    with pytest.raises(IndexError):
        pipe.adapter.token_grid(inputs, len(emb.image_positions))


def test_qwen_grid_follows_the_aspect_ratio():
    model, processor = tiny_model("qwen2_vl")
    vs = VisSparse(base_model=model, processor=processor)
    inputs = vs.prepare_inputs(random_image(56, 112), "Hi?")
    grid = vs.pipeline.adapter.token_grid(inputs, 0)
    assert (grid.rows, grid.cols) == (2, 4)  # (4 x 8 patches) / merge 2


def test_grid_picture_is_the_region_the_grid_covers(hf_vs):
    adapter, processor = hf_vs.pipeline.adapter, hf_vs.pipeline.processor
    picture = adapter.grid_picture(random_image(60, 100), processor.image_processor)
    expected = {"merged_grid": (100, 60), "square_crop": (60, 60), "base_tile": (100, 100)}
    assert picture.size == expected[adapter.spec.layout]
