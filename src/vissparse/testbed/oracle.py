"""Oracle selections for the testbed: they read the generated scene's object geometry.

Testbed only (a user's model has no scene behind its images), so the oracles are not in
the scorer registry: ``vissparse testbed eval --scorer oracle-objects`` builds them for
the questions it evaluates (:func:`oracle_scorer`). Each is a
:class:`~vissparse.strategies.base.TokenScorer` whose scores, under the usual top-k,
keep exactly ``kept_count(keep_ratio, n)`` tokens in this order:

``oracle-one-per-object``
    First each object's key token (the cell it covers most; on a tie the first in
    raster order, as :func:`~vissparse.testbed.scenes.token_labels` marks it), larger
    coverage first; then the other tokens in a random order.
``oracle-objects``
    First the key tokens as above; then every other token an object covers, by the
    share of the cell it covers (largest first); then the background in a random order.

Equal coverage comes in a random order too (not by position).

The random order is a pure function of the sample key the pipeline passes (a hash of
the image and the prompt), so both oracles are deterministic. The better of the two at
each keep ratio is the testbed's accuracy ceiling (:mod:`vissparse.testbed.ceiling`).

Image token ``t`` is cell ``(t // side, t % side)`` of a ``side x side`` grid of
``IMAGE_SIZE / side``-pixel cells: LLaVA's patches, or Qwen2-VL's merged 2x2 patch
blocks (:func:`token_grid` reads the side from the processor's patch and merge facts).

Example:
    >>> from vissparse.testbed.scenes import LARGE, Obj
    >>> cover = object_cover([Obj("square", "red", LARGE, 12.0, 12.0)], side=16)
    >>> cover.shape, int((cover > 0).sum())
    ((1, 256), 9)
    >>> scores = oracle_scores("oracle-objects", cover, b"key")
    >>> int(scores.argmax()), bool((scores[cover[0] > 0] > 1).all())
    (17, True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from vissparse.host_sync import to_device
from vissparse.strategies.base import TokenScorer, check_tokens_and_query
from vissparse.testbed.scenes import IMAGE_SIZE, Obj, _draw_object

ORACLES = ("oracle-objects", "oracle-one-per-object")
TIE_BREAK = 1e-3  # below 1 / 64, the finest step of a cell's share in a 16 x 16 grid


def is_oracle(name: object) -> bool:
    """Whether ``name`` names one of the testbed's oracle selections.

    Example:
        >>> is_oracle("oracle-objects"), is_oracle("random")
        (True, False)
    """
    return isinstance(name, str) and name in ORACLES


def token_grid(processor: Any) -> int:
    """The side of the square image-token grid of a testbed scene, from ``processor``.

    Qwen2-VL: the processed scene's ``image_grid_thw`` over the merge size; LLaVA: the
    processed image's side over the patch size. The cell must tile the scene exactly.

    Example:
        >>> from vissparse.testbed.models import build_model
        >>> token_grid(build_model("qwen2_vl")[1]), token_grid(build_model("llava")[1])
        (16, 16)
    """
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    out = processor.image_processor(images=[image], return_tensors="pt")
    if "image_grid_thw" in out:
        merge = int(processor.image_processor.merge_size)
        _, rows, cols = (int(v) for v in out["image_grid_thw"][0])
        rows, cols = rows // merge, cols // merge
    else:
        patch = int(processor.patch_size)
        rows, cols = (int(v) // patch for v in out["pixel_values"].shape[-2:])
    if rows != cols or IMAGE_SIZE % rows:
        raise ValueError(f"`processor` cuts a {IMAGE_SIZE}-pixel scene into a {rows}x{cols} "
                         f"token grid; the oracles need a square grid that tiles it")  # fmt: skip
    return rows


def object_cover(objects: Sequence[Obj], side: int) -> np.ndarray:
    """``[len(objects), side * side]``: the share of each cell each object covers.

    Objects are drawn as :func:`~vissparse.testbed.scenes.draw_scene` draws them; cells
    are in raster order.
    """
    if side < 1 or IMAGE_SIZE % side:
        raise ValueError(f"`side` must divide {IMAGE_SIZE}, got {side!r}")
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(canvas)
    for i, obj in enumerate(objects, start=1):
        _draw_object(draw, obj, i)
    cell = IMAGE_SIZE // side
    ids = np.asarray(canvas).reshape(side, cell, side, cell).transpose(0, 2, 1, 3)
    blocks = ids.reshape(side * side, cell * cell)
    counts = np.stack([(blocks == i).sum(axis=1) for i in range(1, len(objects) + 1)])
    return counts.reshape(len(objects), side * side) / (cell * cell)


def _background(key: bytes, n: int) -> np.ndarray:
    """``n`` draws in [0, 1) that are a pure function of the sample ``key``."""
    digest = hashlib.blake2b(key, digest_size=16, person=b"vissparse-orcl")
    return np.random.default_rng(int.from_bytes(digest.digest(), "little")).random(n)


def oracle_scores(name: str, cover: np.ndarray, key: bytes) -> np.ndarray:
    """One image's scores ``[n]`` under oracle ``name`` (see the module's docstring).

    ``cover`` is :func:`object_cover` of the image's objects. Background draws ``u`` lie in
    [0, 1); other object tokens (``oracle-objects``) at ``1 + share + TIE_BREAK * u``, key
    tokens at ``3 + share + TIE_BREAK * u``: equal shares come in a random order.
    """
    if name not in ORACLES:
        raise ValueError(f"`name` must be one of {list(ORACLES)}, got {name!r}")
    scores = _background(key, cover.shape[1])
    if not len(cover):
        return scores
    # equal shares in a random order: a share is a multiple of 1 / pixels per cell
    share = cover.max(axis=0) + TIE_BREAK * scores
    if name == "oracle-objects":
        scores = np.where(cover.max(axis=0) > 0, 1.0 + share, scores)
    keys = cover.argmax(axis=1)  # first of the most covered cells, per object
    scores[keys] = 3.0 + share[keys]
    return scores


class OracleScorer(TokenScorer):
    """A testbed oracle: scores from the scene behind each image (not sync-free).

    ``covers`` maps each sample key (as the HF pipeline computes it,
    :func:`~vissparse.hf.inputs.sample_keys`) to :func:`object_cover` of its scene;
    :func:`oracle_scorer` builds it for a list of testbed questions.

    Example:
        >>> scorer = OracleScorer("oracle-one-per-object", {b"k": np.eye(2, 4)})
        >>> scorer.score(torch.zeros(1, 4, 2), torch.zeros(1, 2), sample_keys=[b"k"])[0, :2].floor()
        tensor([4., 4.])
    """

    requires = frozenset({"sample_keys"})

    def __init__(self, name: str, covers: dict[bytes, np.ndarray]) -> None:
        if name not in ORACLES:
            raise ValueError(f"`name` must be one of {list(ORACLES)}, got {name!r}")
        self.name = name
        self.covers = covers

    def score(
        self,
        image_tokens: Tensor,
        query: Tensor,
        valid: Tensor | None = None,
        sample_keys: Sequence[bytes] | None = None,
    ) -> Tensor:
        """Float32 oracle scores ``[B, N]`` of each row's scene, on the tokens' device."""
        check_tokens_and_query(image_tokens, query, valid)
        b, n = image_tokens.shape[:2]
        if sample_keys is None or len(sample_keys) != b:
            raise ValueError(f"`sample_keys` must be {b} keys, one per row (the oracle finds "
                             f"each row's scene by its key), got {sample_keys!r:.80}")  # fmt: skip
        rows = []
        for i, key in enumerate(sample_keys):
            cover = self.covers.get(key)
            if cover is None:
                raise ValueError(f"`sample_keys` row {i} is no question the {self.name} "
                                 "oracle was built for: build it for the questions you "
                                 "evaluate")  # fmt: skip
            if cover.shape[1] != n:
                raise ValueError(f"`image_tokens` row {i} has {n} tokens, but its scene's "
                                 f"token grid has {cover.shape[1]}")  # fmt: skip
            rows.append(oracle_scores(self.name, cover, key))
        array = np.stack(rows) if rows else np.zeros((0, n))
        return to_device(torch.from_numpy(array).float(), image_tokens.device)

    def __repr__(self) -> str:
        return f"OracleScorer({self.name!r}, {len(self.covers)} scenes)"


def oracle_scorer(name: str, questions: Sequence[dict[str, Any]], processor: Any) -> OracleScorer:
    """Oracle ``name`` for testbed ``questions`` (with ``objects``) as ``processor`` sees them.

    Example:
        >>> from vissparse.testbed.models import build_model
        >>> from vissparse.testbed.questions import make_questions
        >>> oracle_scorer("oracle-objects", make_questions(2), build_model("llava")[1])
        OracleScorer('oracle-objects', 2 scenes)
    """
    from vissparse.hf.inputs import normalize_batch, sample_keys

    if name not in ORACLES:
        raise ValueError(f"`name` must be one of {list(ORACLES)}, got {name!r}")
    missing = [i for i, q in enumerate(questions) if "objects" not in q]
    if missing:
        raise ValueError(f"`questions` item {missing[0]} has no `objects` (a testbed "
                         f"question's scene): the oracles read them")  # fmt: skip
    side = token_grid(processor)
    covers: dict[bytes, np.ndarray] = {}
    for q in questions:
        items, _ = normalize_batch(q["image"], q["question"], ())
        (key,) = sample_keys(items)
        covers[key] = object_cover(q["objects"], side)
    return OracleScorer(name, covers)
