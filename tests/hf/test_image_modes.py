"""Every PIL mode reads as the picture a viewer shows; huge files fail in one line."""

import json

import numpy as np
import pytest
from PIL import Image

from vissparse.data import VQAJsonlDataset
from vissparse.hf.inputs import load_image, probe_image

WIDTH = 256
RAMP = np.tile(np.arange(WIDTH, dtype=np.uint8), (4, 1))  # the 8-bit picture a viewer shows
RAMP16 = RAMP.astype(np.uint32) * 257  # the same ramp at 16 bits (255 -> 65535)


def grey(ramp=RAMP):
    return Image.fromarray(ramp)


def rgb_ramp():
    """Red rises, green falls, blue fixed: a colour ramp, so channels cannot be mixed up."""
    return np.stack([RAMP, 255 - RAMP, np.full_like(RAMP, 60)], axis=-1)


def with_alpha(image):
    alpha = np.zeros(RAMP.shape, dtype=np.uint8)
    alpha[:, ::2] = 255  # every other column fully transparent
    out = image.copy()
    out.putalpha(Image.fromarray(alpha))
    return out


def sixteen(mode, values=RAMP16):
    dtype = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}[mode]
    h, w = values.shape
    return Image.frombytes(mode, (w, h), values.astype(dtype).tobytes())


def lab_viewer_picture():
    """LAB through littleCMS (what a colour-managed viewer does): 8-bit LAB cannot hold
    this saturated ramp exactly, so the reference is the CMS round trip, not the ramp."""
    from PIL import ImageCms

    srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB", 6500)
    to_lab = ImageCms.buildTransform(srgb, lab, "RGB", "LAB")
    to_rgb = ImageCms.buildTransform(lab, srgb, "LAB", "RGB")
    return np.asarray(ImageCms.applyTransform(
        ImageCms.applyTransform(Image.fromarray(rgb_ramp()), to_lab), to_rgb))  # fmt: skip


def palette():
    image = Image.fromarray(RAMP, "L").convert("P")  # identity grey palette
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    return image


# mode -> (image in that mode, the RGB picture a viewer shows, tolerance in levels)
GREY = np.repeat(RAMP[..., None], 3, axis=-1)
CASES = {
    "L": (lambda: grey(), GREY, 0),
    "P": (palette, GREY, 0),
    "PA": (lambda: with_alpha(palette().convert("PA")), GREY, 0),
    "LA": (lambda: with_alpha(grey().convert("LA")), GREY, 0),
    "La": (lambda: grey().convert("LA").convert("La"), GREY, 0),
    "RGB": (lambda: Image.fromarray(rgb_ramp()), rgb_ramp(), 0),
    "RGBA": (lambda: with_alpha(Image.fromarray(rgb_ramp())), rgb_ramp(), 0),
    "RGBa": (lambda: Image.fromarray(rgb_ramp()).convert("RGBA").convert("RGBa"), rgb_ramp(), 0),
    "RGBX": (lambda: Image.fromarray(rgb_ramp()).convert("RGBX"), rgb_ramp(), 0),
    "CMYK": (lambda: Image.fromarray(rgb_ramp()).convert("CMYK"), rgb_ramp(), 0),
    "YCbCr": (lambda: Image.fromarray(rgb_ramp()).convert("YCbCr"), rgb_ramp(), 3),
    "LAB": (lambda: Image.fromarray(rgb_ramp()).convert("LAB"), lab_viewer_picture(), 1),
    "HSV": (lambda: Image.fromarray(rgb_ramp()).convert("HSV"), rgb_ramp(), 6),  # 8-bit H
    "I;16": (lambda: sixteen("I;16"), GREY, 0),
    "I;16L": (lambda: sixteen("I;16L"), GREY, 0),
    "I;16B": (lambda: sixteen("I;16B"), GREY, 0),
    "I;16N": (lambda: sixteen("I;16N"), GREY, 0),
    "I": (lambda: Image.fromarray(RAMP16.astype(np.int32)), GREY, 0),
    "F": (lambda: Image.fromarray(RAMP.astype(np.float32)), GREY, 0),  # PIL's 0..255 scale
}


@pytest.mark.parametrize("mode", sorted(CASES))
def test_every_mode_reads_as_the_viewer_picture(mode):
    build, expected, tolerance = CASES[mode]
    image = build()
    assert image.mode == mode
    out = load_image(image)
    assert out.mode == "RGB" and out.size == image.size
    diff = np.abs(np.asarray(out, dtype=np.int16) - expected.astype(np.int16))
    assert int(diff.max()) <= tolerance, f"{mode}: off by {int(diff.max())} levels"


def test_bilevel_mode():
    bits = np.zeros((4, 8), dtype=bool)
    bits[:, 4:] = True
    out = np.asarray(load_image(Image.fromarray(bits)))
    assert (out[:, :4] == 0).all() and (out[:, 4:] == 255).all()


def test_float_images_in_zero_one_are_scaled():
    out = np.asarray(load_image(Image.fromarray(RAMP.astype(np.float32) / 255)))
    assert np.array_equal(out[..., 0], RAMP)


def test_sixteen_bit_rounds_to_the_nearest_level():
    # 16-bit values between two 8-bit levels go to the nearer one, not always down or up
    values = np.array([[0, 128, 129, 257 * 100 + 128, 257 * 100 + 129, 65535]])
    out = np.asarray(load_image(sixteen("I;16", values)))[0, :, 0]
    assert out.tolist() == [0, 0, 1, 100, 101, 255]


@pytest.mark.parametrize(
    ("mode", "values", "shown"),
    [("I", np.array([[-1, 5]], dtype=np.int32), r"\[-1, 5\]"),
     ("I", np.array([[0, 70000]], dtype=np.int32), r"\[0, 70000\]"),
     ("F", np.array([[-0.5, 0.5]], dtype=np.float32), r"\[-0.5, 0.5\]"),
     ("F", np.array([[0, 300]], dtype=np.float32), r"\[0, 300\]"),
     ("F", np.array([[0, np.nan]], dtype=np.float32), "nan"),
     ("F", np.array([[0, np.inf]], dtype=np.float32), "inf")],
)  # fmt: skip
def test_values_without_a_standard_reading_are_refused(mode, values, shown):
    image = Image.fromarray(values)
    assert image.mode == mode
    with pytest.raises(ValueError, match=rf"item 3: `image` of PIL mode '{mode}' .*{shown}"):
        load_image(image, index=3)


@pytest.mark.parametrize(
    ("fmt", "mode", "opened_as"),
    [("png", "I;16", "I;16"), ("tiff", "I;16", "I;16"), ("pgm", "I;16", "I"),
     ("tiff", "F", "F"), ("tiff", "I", "I"), ("jpeg", "CMYK", "CMYK"), ("png", "RGBA", "RGBA")],
)  # fmt: skip
def test_files_read_as_the_viewer_picture(tmp_path, fmt, mode, opened_as):
    build, expected, tolerance = CASES[mode]
    path = tmp_path / f"x.{fmt}"
    build().save(path)
    with Image.open(path) as opened:
        assert opened.mode == opened_as
    out = np.asarray(load_image(path)).astype(np.int16)
    tolerance = 8 if fmt == "jpeg" else tolerance  # lossy
    assert np.abs(out - expected.astype(np.int16)).max() <= tolerance


def test_sixteen_bit_png_through_the_dataset_is_a_gradient(tmp_path):
    """The issue's repro: a 0..65535 gradient saved as I;16 came out 99.6% white."""
    sixteen("I;16", np.tile(np.linspace(0, 65535, 256).astype(np.uint32), (8, 1))).save(
        tmp_path / "g.png"
    )
    row = {"image": "g.png", "question": "Q?", "answer": "A"}
    (tmp_path / "qa.jsonl").write_text(json.dumps(row) + "\n")
    pixels = np.asarray(VQAJsonlDataset(tmp_path / "qa.jsonl")[0]["image"])[..., 0]
    assert float((pixels == 255).mean()) < 0.01
    assert pixels[0].tolist() == list(range(256))


def test_huge_files_fail_in_one_line_naming_file_and_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1200 pixels > 2 x 100
    expected = r"`image` '.*big.png' is too large to open: .*1200 pixels.*= 2 x 100"
    for read in (load_image, probe_image):
        with pytest.raises(ValueError, match=expected) as info:
            read(path)
        assert "\n" not in str(info.value) and "= None" in str(info.value)
    row = {"image": "big.png", "question": "Q?", "answer": "A"}
    (tmp_path / "qa.jsonl").write_text("\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"qa.jsonl:2: `image` .*big.png' is too large"):
        VQAJsonlDataset(tmp_path / "qa.jsonl")[0]


def test_cli_show_and_sweep_name_a_huge_file_in_one_line(tmp_path, monkeypatch, capsys):
    """The issue's repro: `show` and `sweep` printed a 27-33 line traceback."""
    from vissparse.cli import main

    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    row = {"image": "big.png", "question": "Q?", "answer": "A"}
    (tmp_path / "qa.jsonl").write_text(json.dumps(row) + "\n")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    runs = {
        "show": ["show", str(tmp_path / "big.png"), "What?", "--model", "tiny:llava",
                 "--out", str(tmp_path / "x.png")],
        "sweep": ["sweep", "--model", "tiny:llava", "--data", str(tmp_path / "qa.jsonl"),
                  "--out", str(tmp_path / "sweep")],
    }  # fmt: skip
    for name, argv in runs.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is too large to open" in err, (name, err)
        assert "MAX_IMAGE_PIXELS" in err and (name == "show" or "qa.jsonl:1:" in err)


def test_a_file_is_turned_upright_by_its_exif_orientation(tmp_path):
    """A phone photo stored sideways with an EXIF orientation tag reads upright (as
    transformers' load_image reads it); a PIL image passed in is taken as it is."""
    stored = Image.new("RGB", (4, 2), (0, 0, 0))
    stored.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "sideways.png"
    stored.save(path, exif=exif.tobytes())
    upright = load_image(path)
    assert upright.size == (2, 4)
    assert upright.getpixel((1, 0)) == (255, 0, 0)  # the stored top-left, now top-right
    assert load_image(stored).size == (4, 2)
