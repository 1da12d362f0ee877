"""Draw which image tokens VisSparse keeps for a prompt: one panel per prompt.

Kept tokens are shown at full brightness inside a cyan outline, pruned tokens dimmed.
Each panel is titled with its prompt and ``kept k/N``. ``matplotlib`` (the ``plot`` extra)
is imported only when drawing, and only its Agg canvas is used: no window, no pyplot state.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from vissparse.api import VisSparse

KEPT_COLOUR = "#00e5ff"
ANSWER_COLOUR = "#ff00ff"
PRUNED_BRIGHTNESS = 0.3  # pruned tokens are drawn at this fraction of their brightness
MAX_PICTURE_SIDE = 1024  # photos are shrunk to this longest side before drawing
MOCK_BACKGROUND = 0.45  # grey level of mock background tokens


@dataclass
class _Panel:
    picture: np.ndarray  # [H, W, 3] float in [0, 1]
    keep: np.ndarray  # [rows, cols] bool
    title: str
    answer: np.ndarray | None = None  # [rows, cols] bool: the planted answer region


def render_overlay(
    vs: VisSparse,
    image: Any,
    prompts: str | Sequence[str],
    out_path: str | os.PathLike[str],
    *,
    dpi: int = 100,
) -> Path:
    """Write a PNG of the image tokens ``vs`` keeps for each prompt, side by side.

    Each prompt is pruned on its own (its query differs), giving one panel per prompt.

    HF models: ``image`` is a PIL image or a path. The image's keep mask comes from
    ``vs.pipeline`` (encode + prune, no generation) and is laid on the picture the tokens
    were cut from, as the family adapter describes it (``token_grid``/``grid_picture``):

    - Qwen2-VL / Qwen2.5-VL: the merged-token grid ``(grid_h / 2, grid_w / 2)`` over the
      whole original image. The processor resizes to multiples of 28 pixels, so cell
      borders can be off by up to 14 resized pixels.
    - LLaVA-1.5: the square ``sqrt(N) x sqrt(N)`` grid over the centre crop the CLIP
      processor takes (after padding to a square if the processor has ``do_pad``); what
      lies outside the crop is not shown, since the model never sees it.
    - LLaVA-NeXT: only the base tile, the first ``s * s`` tokens (``s = image_size //
      patch_size``), drawn over the image squashed to a square, as the base tile sees
      it; the anyres tiles and newline tokens are not drawn. Titles say "base tile" and
      also give the whole image's count.

    Mock mode: ``image`` is a :class:`~vissparse.mock.samples.MockSample` or an ``[N, D]``
    token tensor (``N`` a square). The ``side x side`` token grid is drawn as a picture:
    background tokens grey, planted regions in their planted colour (the colour word
    whose vector the token matches best), and for a sample the answer region outlined
    with a dashed magenta line.

    Args:
        vs: a :class:`~vissparse.VisSparse` (HF model or mock).
        image: see above.
        prompts: one prompt or a list of 1+ non-empty prompts.
        out_path: where to write the PNG (must end in ``.png``); missing parent folders
            are created.
        dpi: resolution; each panel is about 4 inches wide.

    Returns:
        The path written.

    Raises:
        ValueError: empty or non-string ``prompts``, or ``out_path`` not a ``.png``.
        ImportError: matplotlib is not installed.

    Example:
        >>> import tempfile
        >>> from vissparse import VisSparse
        >>> vs = VisSparse("mock", mock=True, keep_ratio=0.25, dim=32, n_tokens=64)
        >>> sample = vs.pipeline.samples(1)[0]
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = render_overlay(vs, sample, [sample.prompt, "Any dog?"], Path(tmp) / "k.png")
        ...     out.name
        'k.png'
    """
    return render_comparison([vs], image, prompts, out_path, dpi=dpi)


def render_comparison(
    models: Sequence[VisSparse],
    image: Any,
    prompts: str | Sequence[str],
    out_path: str | os.PathLike[str],
    *,
    dpi: int = 100,
) -> Path:
    """Like :func:`render_overlay`, with one row of panels per model (e.g. per scorer).

    The models share the image and prompts; with several, each panel title names the
    model's scorer, so the same question can be shown with cosine and random side by
    side. They must all be mock or all HF models, at one keep ratio.
    """
    prompt_list = _check_prompts(prompts)
    path = Path(out_path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"`out_path` must end in .png, got {str(out_path)!r}")
    if not models or len({(vs.mock, vs.keep_ratio) for vs in models}) != 1:
        raise ValueError(
            "`models` must be one or more VisSparse, all mock or all HF, one keep_ratio"
        )
    _import_matplotlib()
    panels: list[_Panel] = []
    for vs in models:
        mine = (
            _mock_panels(vs, image, prompt_list) if vs.mock else _hf_panels(vs, image, prompt_list)
        )
        if len(models) > 1:
            for panel in mine:
                panel.title = f"scorer={_scorer_name(vs)}\n{panel.title}"
        panels += mine
    first = models[0]
    where = "mock" if first.mock else _model_label(first)
    heading = f"{where} · keep_ratio={first.keep_ratio:g}"
    if len(models) == 1:
        heading += f" · scorer={_scorer_name(first)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    _draw(panels, heading, path, dpi)
    return path


def _scorer_name(vs: VisSparse) -> str:
    scorer = vs.config.scorer
    return scorer if isinstance(scorer, str) else type(scorer).__name__


# --- checks ------------------------------------------------------------------------------
def _check_prompts(prompts: Any) -> list[str]:
    items = [prompts] if isinstance(prompts, str) else prompts
    if not isinstance(items, Sequence) or not items:
        raise ValueError(f"`prompts` must be one or more non-empty strings, got {prompts!r}")
    for i, prompt in enumerate(items):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"`prompts` item {i} must be a non-empty string, got {prompt!r}")
    return list(items)


def _import_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "render_overlay needs matplotlib: pip install 'vissparse[plot]' "
            "(or pip install 'matplotlib>=3.7')"
        ) from err
    return matplotlib


# --- panels ------------------------------------------------------------------------------
def _hf_panels(vs: VisSparse, image: Any, prompts: list[str]) -> list[_Panel]:
    from vissparse.hf.inputs import load_image

    pipe = vs.pipeline
    picture = load_image(image)
    panels: list[_Panel] = []
    for prompt in prompts:
        inputs, prompt_mask, items, _ = pipe._encode(picture, prompt)
        keep = pipe.prune(inputs, prompt_mask, pipe._keys(items)).image_keep[0].cpu()
        pipe.adapter.reset_state()
        grid = pipe.adapter.token_grid(inputs, 0)
        end = grid.start + grid.n_tokens
        if end > keep.numel() or (not grid.label and end != keep.numel()):
            raise RuntimeError(
                f"the {pipe.adapter.spec.name} token grid ({grid.rows} x {grid.cols} from "
                f"token {grid.start}) does not fit the image's {keep.numel()} tokens"
            )
        cells = keep[grid.start : end]
        counts = f"kept {int(cells.sum())}/{cells.numel()}"
        if grid.label:
            counts += f" ({grid.label}; all tokens {int(keep.sum())}/{keep.numel()})"
        panels.append(_Panel(np.empty(0), _grid(cells, grid.rows), _title(prompt, counts)))
    shown = pipe.adapter.grid_picture(picture, pipe.processor.image_processor).convert("RGB")
    shown.thumbnail((MAX_PICTURE_SIDE, MAX_PICTURE_SIDE))
    array = np.asarray(shown, dtype=np.float32) / 255.0
    for panel in panels:
        panel.picture = array
    return panels


def _mock_panels(vs: VisSparse, image: Any, prompts: list[str]) -> list[_Panel]:
    from vissparse.mock.samples import MockSample

    answer: Tensor | None = None
    if isinstance(image, MockSample):
        tokens, answer = image.image_tokens, image.answer_tokens
        answer_name = image.objects[0][0] if image.objects else "answer"
    elif isinstance(image, Tensor):
        tokens = image
    else:
        raise TypeError(
            "in mock mode `image` must be a MockSample or an [N, D] token tensor, "
            f"got {type(image).__name__}"
        )
    side = math.isqrt(tokens.shape[0]) if tokens.dim() == 2 else 0
    if tokens.dim() != 2 or side == 0 or side * side != tokens.shape[0]:
        raise ValueError(
            f"mock `image` tokens must be [N, D] with N a square, got {tuple(tokens.shape)}"
        )
    answer_grid = None if answer is None else _grid(answer, side)
    panels = []
    for prompt in prompts:
        keep = vs.pipeline.run(tokens, prompt).keep_mask.cpu()
        counts = f"kept {int(keep.sum())}/{keep.numel()}"
        if answer is not None:
            counts += f" · {answer_name} kept {int((keep & answer).sum())}/{int(answer.sum())}"
        grid = _grid(keep, side)
        panels.append(_Panel(np.empty(0), grid, _title(prompt, counts), answer_grid))
    picture = _mock_picture(vs.pipeline.world, tokens, side)
    for panel in panels:
        panel.picture = picture
    return panels


def _mock_picture(world: Any, tokens: Tensor, side: int) -> np.ndarray:
    """``[side, side, 3]``: grey background, planted tokens in their colour word's colour."""
    from matplotlib.colors import to_rgb

    from vissparse.mock.world import COLOURS

    sims = tokens.float() @ world.colour_prototypes().T  # planted tokens score ~1
    best, which = sims.max(dim=-1)
    strength = ((best - 0.25) / 0.5).clamp(0.0, 1.0).numpy()[:, None]
    palette = np.array([to_rgb(name) for name in COLOURS], dtype=np.float32)
    rgb = MOCK_BACKGROUND * (1.0 - strength) + palette[which.numpy()] * strength
    return rgb.reshape(side, side, 3).astype(np.float32)


def _grid(mask: Tensor, rows: int) -> np.ndarray:
    return mask.detach().cpu().bool().numpy().reshape(rows, -1)


def _title(prompt: str, counts: str) -> str:
    lines = textwrap.wrap(f"“{prompt.strip()}”", 40, max_lines=3, placeholder=" …")
    return "\n".join([*lines, counts]).replace("$", r"\$")  # no mathtext


def _model_label(vs: VisSparse) -> str:
    if isinstance(vs.base_model, str):
        return vs.base_model
    name = getattr(vs.model.config, "_name_or_path", "")
    return str(name) or vs.pipeline.adapter.spec.name


# --- drawing -----------------------------------------------------------------------------
def _draw(panels: list[_Panel], heading: str, path: Path, dpi: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = panels[0].picture.shape[:2]
    aspect = min(max(height / width, 0.4), 2.5)
    title_lines = max(panel.title.count("\n") + 1 for panel in panels)
    size = (4.0 * len(panels), 4.0 * aspect + 0.8 + 0.18 * title_lines)
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel)
    fig.suptitle(heading, fontsize=10)
    legend = ["bright, cyan outline: kept · dimmed: pruned"]
    if panels[0].answer is not None:
        legend.append("dashed magenta: the sample's answer region")
    fig.supxlabel((" · " if len(panels) > 1 else "\n").join(legend), fontsize=8)
    fig.savefig(path, format="png", dpi=dpi)


def _draw_panel(ax: Any, panel: _Panel) -> None:
    from matplotlib.collections import LineCollection

    picture, keep = panel.picture, panel.keep
    height, width = picture.shape[:2]
    rows, cols = keep.shape
    cell_h, cell_w = height / rows, width / cols
    # each pixel's cell, to dim the pixels of pruned tokens
    pixel_keep = keep[(np.arange(height) * rows) // height][:, (np.arange(width) * cols) // width]
    shaded = picture * np.where(pixel_keep, 1.0, PRUNED_BRIGHTNESS)[..., None]
    ax.imshow(shaded, extent=(0, width, height, 0), interpolation="nearest")
    if max(rows, cols) <= 48:  # faint cell borders, when cells are big enough to see
        lines = [[(c * cell_w, 0), (c * cell_w, height)] for c in range(1, cols)]
        lines += [[(0, r * cell_h), (width, r * cell_h)] for r in range(1, rows)]
        ax.add_collection(LineCollection(lines, colors="white", linewidths=0.4, alpha=0.3))
    ax.add_collection(
        LineCollection(_outline(keep, cell_w, cell_h), colors=KEPT_COLOUR, linewidths=1.5)
    )
    if panel.answer is not None:
        answer = _outline(panel.answer, cell_w, cell_h)
        ax.add_collection(
            LineCollection(answer, colors=ANSWER_COLOUR, linewidths=2.0, linestyles="--")
        )
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(panel.title, fontsize=9)


def _outline(mask: np.ndarray, cell_w: float, cell_h: float) -> list[list[tuple[float, float]]]:
    """Segments of the boundary of the ``True`` cells of a ``[rows, cols]`` mask.

    Example:
        >>> len(_outline(np.array([[True, False], [False, False]]), 1.0, 1.0))
        4
    """
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    vertical = padded[1:-1, :-1] != padded[1:-1, 1:]  # [rows, cols + 1]: edge left of col c
    horizontal = padded[:-1, 1:-1] != padded[1:, 1:-1]  # [rows + 1, cols]: edge above row r
    segments = [[(c * cell_w, r * cell_h), (c * cell_w, (r + 1) * cell_h)]
                for r, c in zip(*np.nonzero(vertical), strict=True)]  # fmt: skip
    segments += [[(c * cell_w, r * cell_h), ((c + 1) * cell_w, r * cell_h)]
                 for r, c in zip(*np.nonzero(horizontal), strict=True)]  # fmt: skip
    return segments
