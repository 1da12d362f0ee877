"""Scenes for the testbed: small coloured shapes on a textured, noisy background.

A scene is a list of :class:`Obj` drawn by :func:`draw_scene` on an ``IMAGE_SIZE``
square. Each object's bounding box covers at most ``LARGE**2 / IMAGE_SIZE**2`` (about
2.4%) of the image, so most image tokens show background, as in real photos where the
question concerns a small region. Objects never overlap (a gap of ``GAP`` pixels).

Objects sit on the ``CELL``-pixel grid that both testbed models cut their image tokens
on (LLaVA's 8-pixel patches, Qwen2-VL's 2x2-merged 4-pixel patches): a small object
fills the middle of a 2x2 block of cells, a large one of a 3x3 block, so every image
token shows part of at most one object. Objects placed anywhere straddle cells at
random offsets, and the from-scratch vision towers then stayed near chance at telling
the shapes apart within the CPU training budget (see docs/testbed/index.md).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> objs = place_objects(rng, [("circle", "red", LARGE), ("square", "blue", SMALL)])
    >>> draw_scene(objs, rng).size
    (128, 128)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 128
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles",
           "diamond": "diamonds", "cross": "crosses"}  # fmt: skip
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 230),
          "yellow": (235, 215, 40), "purple": (150, 60, 200), "cyan": (40, 205, 215)}  # fmt: skip
SMALL, LARGE = 14, 20  # side of an object's bounding box in pixels
CELL = 8  # side of one image token's cell in pixels
GAP = 3  # minimum free pixels between two objects' boxes
MAX_OBJECTS = 9


@dataclass(frozen=True)
class Obj:
    """One object: shape, colour name, side in pixels and centre ``(x, y)``."""

    shape: str
    color: str
    size: int
    x: float
    y: float

    def clashes(self, other: Obj) -> bool:
        """Whether the two boxes (plus ``GAP``) overlap."""
        reach = (self.size + other.size) / 2 + GAP
        return abs(self.x - other.x) < reach and abs(self.y - other.y) < reach


Where = Callable[[float, float, list["Obj"]], bool]


def place_objects(
    rng: np.random.Generator,
    specs: Sequence[tuple[str, str, int]],
    where: Sequence[Where | None] | None = None,
    tries: int = 400,
) -> list[Obj] | None:
    """Place ``(shape, colour, size)`` specs on the cell grid without overlap, or None.

    An object of side ``size`` takes a block of ``ceil(size / CELL)`` cells and is
    centred in it; the block's corner is drawn uniformly among the grid's positions.

    ``where[i]``, when given, is a predicate ``(x, y, placed)`` on the centre of object
    ``i`` and the objects placed before it (in order), which the object must satisfy.
    """
    placed: list[Obj] = []
    for i, (shape, color, size) in enumerate(specs):
        ok = where[i] if where is not None else None
        cells = -(-size // CELL)
        for _ in range(tries):
            corner = rng.integers(0, IMAGE_SIZE // CELL - cells + 1, size=2)
            x, y = (float(c * CELL + cells * CELL / 2) for c in corner)
            obj = Obj(shape, color, size, x, y)
            if (ok is None or ok(obj.x, obj.y, placed)) and not any(obj.clashes(p) for p in placed):
                placed.append(obj)
                break
        else:
            return None
    return placed


def background(rng: np.random.Generator, clutter: float = 1.0) -> np.ndarray:
    """A desaturated textured background ``[H, W, 3]`` float array in 0..255.

    Low-frequency blotches, a gentle gradient, faint lines and per-pixel noise: never a
    flat colour, and never saturated enough to pass for an object's colour. ``clutter``
    scales all of them (1.0, the default, is what every held-out scene uses; training
    may start lower, see :class:`vissparse.testbed.stream.QuestionStream`). The random
    draws do not depend on it.
    """
    size = IMAGE_SIZE
    base = rng.uniform(95, 165)
    coarse = rng.normal(0, 18, (6, 6)).astype(np.float32)
    blotch = np.asarray(
        Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    )
    ramp = np.linspace(-1, 1, size, dtype=np.float32) * rng.uniform(-15, 15)
    ramp = ramp[None, :] if rng.random() < 0.5 else ramp[:, None]
    gray = base + clutter * (blotch + ramp)
    tint = clutter * rng.uniform(-8, 8, 3)
    img = gray[..., None] + tint[None, None, :]
    lines = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(lines)
    for _ in range(int(rng.integers(2, 6))):
        pts = [tuple(float(v) for v in rng.uniform(0, size, 2)) for _ in range(2)]
        draw.line(pts, fill=int(rng.integers(10, 30)), width=int(rng.integers(1, 3)))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    img = img + clutter * sign * np.asarray(lines, dtype=np.float32)[..., None]
    return img + clutter * rng.normal(0, 9, img.shape)


def _outline(obj: Obj) -> list[tuple[float, float]]:
    h = obj.size / 2
    x, y = obj.x, obj.y
    if obj.shape == "triangle":
        return [(x, y - h), (x + h, y + h), (x - h, y + h)]
    if obj.shape == "diamond":
        return [(x, y - h), (x + h, y), (x, y + h), (x - h, y)]
    t = obj.size / 6  # cross: arms a third of the side wide
    return [(x - t, y - h), (x + t, y - h), (x + t, y - t), (x + h, y - t), (x + h, y + t),
            (x + t, y + t), (x + t, y + h), (x - t, y + h), (x - t, y + t), (x - h, y + t),
            (x - h, y - t), (x - t, y - t)]  # fmt: skip


def _draw_object(draw: ImageDraw.ImageDraw, obj: Obj, fill: int | tuple[int, ...]) -> None:
    h = obj.size / 2
    box = (obj.x - h, obj.y - h, obj.x + h - 1, obj.y + h - 1)
    if obj.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif obj.shape == "square":
        draw.rectangle((box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1), fill=fill)
    else:
        draw.polygon(_outline(obj), fill=fill)


def draw_scene(
    objects: Sequence[Obj], rng: np.random.Generator, clutter: float = 1.0
) -> Image.Image:
    """Render ``objects`` over a fresh background; colours jitter slightly per object.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> img = draw_scene([Obj("cross", "green", LARGE, 64, 64)], rng)
        >>> img.getpixel((64, 64))[1] > img.getpixel((64, 64))[0]
        True
    """
    canvas = Image.fromarray(np.clip(background(rng, clutter), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        jitter = rng.integers(-12, 13, 3)
        fill = tuple(
            int(np.clip(c + j, 0, 255)) for c, j in zip(COLORS[obj.color], jitter, strict=True)
        )
        _draw_object(draw, obj, fill)
    noisy = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 5, (IMAGE_SIZE, IMAGE_SIZE, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def token_labels(
    objects: Sequence[Obj],
    grid: int = 16,
    cover: float = 0.2,
    per_object: np.ndarray | None = None,
) -> np.ndarray:
    """``[grid * grid, 3]`` (colour, shape, key) labels of each image cell, in raster order.

    Class 0 is background; colour ``k`` is ``list(COLORS)[k - 1]``, shape ``k`` is
    ``SHAPES[k - 1]``. A cell takes the object covering most of it if that covers at
    least ``cover`` of the cell. ``key`` is 1 on one cell per object, the first (in raster
    order) of the cells it covers most: an object covers 4 or up to 9 cells, so counting
    cells does not count objects, and counting key cells does. ``per_object`` (``[len(
    objects), k]`` ints) appends ``k`` columns: each cell an object takes gets that
    object's row, background cells 0. Training uses these as dense auxiliary targets.

    Example:
        >>> labels = token_labels([Obj("circle", "blue", LARGE, 64, 64)])
        >>> sorted({tuple(x) for x in labels.tolist()})
        [(0, 0, 0), (3, 1, 0), (3, 1, 1)]
    """
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(canvas)
    for i, obj in enumerate(objects, start=1):
        _draw_object(draw, obj, i)
    ids = np.asarray(canvas)
    cell = IMAGE_SIZE // grid
    blocks = ids.reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    extra = np.zeros((len(objects), 0), dtype=np.int64) if per_object is None else per_object
    if extra.shape[0] != len(objects):
        raise ValueError(f"`per_object` needs one row per object ({len(objects)}), "
                         f"got shape {tuple(extra.shape)}")  # fmt: skip
    colors = list(COLORS)
    out = np.zeros((grid * grid, 3 + extra.shape[1]), dtype=np.int64)
    for t, block in enumerate(blocks):
        counts = np.bincount(block, minlength=len(objects) + 1)
        counts[0] = 0
        best = int(counts.argmax())
        if best and counts[best] >= cover * block.size:
            obj = objects[best - 1]
            out[t, :2] = (colors.index(obj.color) + 1, SHAPES.index(obj.shape) + 1)
            out[t, 3:] = extra[best - 1]
    if objects:  # the first of each object's most covered cells
        covered = np.stack([(blocks == i).sum(axis=1) for i in range(1, len(objects) + 1)])
        out[covered.argmax(axis=1), 2] = 1
    return out
