"""2D raster images (PNG, JPEG, TIFF, BMP) through Pillow, and deterministic PNG writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfleet.data.io import ImageWriteError, read_header, read_image, write_png
from medfleet.errors import ImageReadError


def _ramp(h: int = 12, w: int = 17) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % 256).astype(np.uint8)


def test_png_grey_round_trip(tmp_path: Path) -> None:
    array = _ramp()
    image = read_image(write_png(tmp_path / "g.png", array))
    assert image.array.dtype == np.uint8
    np.testing.assert_array_equal(image.array, array)
    assert image.spacing == (1.0, 1.0)
    assert image.meta["channel_axis"] is None
    assert image.meta["format"] == "png"
    assert image.ndim_spatial == 2


def test_png_rgb_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    path = write_png(tmp_path / "c.png", array)
    image = read_image(path)
    np.testing.assert_array_equal(image.array, array)
    assert image.meta["channel_axis"] == -1
    assert image.ndim_spatial == 2
    assert image.spacing == (1.0, 1.0)
    assert read_header(path) == ((9, 11), (1.0, 1.0))


def test_png_16_bit_grey_stays_uint16(tmp_path: Path) -> None:
    array = (np.arange(40, dtype=np.uint32).reshape(5, 8) * 1601).astype(np.uint16)
    assert array.max() > 255
    image = read_image(write_png(tmp_path / "d.png", array))
    assert image.array.dtype == np.uint16
    np.testing.assert_array_equal(image.array, array)
    # independent oracle: Pillow reads the same values
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "d.png")), array)


def test_int_arrays_are_narrowed_and_wide_values_refused(tmp_path: Path) -> None:
    labels = np.array([[0, 1], [2, 3]], dtype=np.int64)
    image = read_image(write_png(tmp_path / "l.png", labels))
    assert image.array.dtype == np.uint8
    np.testing.assert_array_equal(image.array, labels)
    wide = np.array([[0, 300], [1000, 65535]], dtype=np.int32)
    image = read_image(write_png(tmp_path / "w.png", wide))
    assert image.array.dtype == np.uint16
    np.testing.assert_array_equal(image.array, wide)
    with pytest.raises(ImageWriteError, match=r"outside 0-65535"):
        write_png(tmp_path / "x.png", np.array([[-1, 2]]))
    with pytest.raises(ImageWriteError, match=r"outside 0-255 for RGB"):
        write_png(tmp_path / "x.png", np.full((2, 2, 3), 256, np.int32))


def test_bool_mask_becomes_zero_one_uint8(tmp_path: Path) -> None:
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    image = read_image(write_png(tmp_path / "m.png", mask))
    assert image.array.dtype == np.uint8
    np.testing.assert_array_equal(image.array, mask.astype(np.uint8))


def test_float_rules(tmp_path: Path) -> None:
    image = read_image(write_png(tmp_path / "f.png", np.array([[0.0, 127.6], [254.5, 255.0]])))
    np.testing.assert_array_equal(image.array, [[0, 128], [254, 255]])  # round half to even
    with pytest.raises(ImageWriteError, match=r"outside \[0, 255\]"):
        write_png(tmp_path / "f.png", np.array([[0.0, 256.0]]))
    with pytest.raises(ImageWriteError, match=r"outside \[0, 255\]"):
        write_png(tmp_path / "f.png", np.array([[-0.5, 1.0]]))
    with pytest.raises(ImageWriteError, match="NaN"):
        write_png(tmp_path / "f.png", np.array([[np.nan, 1.0]]))
    with pytest.raises(ImageWriteError, match="whole numbers"):
        write_png(tmp_path / "f.png", np.array([[0.0, 1.5]]), label=True)
    image = read_image(write_png(tmp_path / "lab.png", np.array([[0.0, 2.0]]), label=True))
    np.testing.assert_array_equal(image.array, [[0, 2]])


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((2, 2, 4), np.uint8), r"\(H, W\) grey or \(H, W, 3\) RGB"),
        (np.zeros((2, 2, 2, 2), np.uint8), r"\(H, W\) grey"),
        (np.zeros((0, 3), np.uint8), "empty"),
        (np.zeros((2, 2, 3), np.uint16), "outside 0-255 for RGB|cannot be written"),
    ],
)
def test_write_png_refuses_unwritable_arrays(tmp_path: Path, array: np.ndarray, match: str) -> None:
    if array.dtype == np.uint16:
        array = array + 1000
    with pytest.raises(ImageWriteError, match=match):
        write_png(tmp_path / "bad.png", array)
    assert not (tmp_path / "bad.png").exists()


def test_write_png_is_byte_identical(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for array in (
        rng.integers(0, 256, (20, 30), dtype=np.uint8),
        rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
        rng.integers(0, 65536, (20, 30), dtype=np.uint16),
        rng.random((20, 30)) > 0.5,
    ):
        a = write_png(tmp_path / "a.png", array).read_bytes()
        b = write_png(tmp_path / "deeper" / "b.png", array.copy()).read_bytes()
        assert a == b
        assert b"tIME" not in a


def test_rgba_drops_alpha_and_la_gives_grey(tmp_path: Path) -> None:
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0  # fully transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.array.shape == (3, 4, 3)
    np.testing.assert_array_equal(image.array[0, 0], [10, 20, 30])
    la = Image.fromarray(_ramp(3, 4)).convert("LA")
    la.putalpha(7)
    la.save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.array.shape == (3, 4)
    np.testing.assert_array_equal(image.array, _ramp(3, 4))


def test_palette_images_expand_to_grey_or_rgb(tmp_path: Path) -> None:
    grey_palette = Image.new("P", (6, 4))
    grey_palette.putpalette([v for i in range(256) for v in (i, i, i)])
    grey_palette.putdata(list(_ramp(4, 6).reshape(-1)))
    grey_palette.save(tmp_path / "pg.png")
    image = read_image(tmp_path / "pg.png")
    assert image.array.shape == (4, 6)
    np.testing.assert_array_equal(image.array, _ramp(4, 6))
    colour = Image.new("P", (2, 1))
    colour.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    colour.putdata([0, 1])
    colour.save(tmp_path / "pc.png")
    image = read_image(tmp_path / "pc.png")
    np.testing.assert_array_equal(image.array, [[[255, 0, 0], [0, 0, 255]]])
    assert image.meta["channel_axis"] == -1


def test_bilevel_image_reads_as_zero_one(tmp_path: Path) -> None:
    bits = np.zeros((5, 9), bool)
    bits[2, 3:7] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    image = read_image(tmp_path / "b.png")
    assert image.array.dtype == np.uint8
    np.testing.assert_array_equal(image.array, bits.astype(np.uint8))


def test_png_phys_in_metres_gives_spacing_in_mm(tmp_path: Path) -> None:
    # 0.1 mm/px along x (10000 px/m), 0.25 mm/px along y (4000 px/m)
    Image.fromarray(_ramp()).save(tmp_path / "p.png", dpi=(10000 * 0.0254, 4000 * 0.0254))
    image = read_image(tmp_path / "p.png")
    assert image.spacing == pytest.approx((0.25, 0.1), rel=1e-9)  # (row, col) = (y, x)
    assert image.meta["spacing_source"] == "png_phys"
    assert read_header(tmp_path / "p.png") == ((12, 17), image.spacing)


@pytest.mark.parametrize(
    ("unit", "x_res", "y_res", "expected"),
    [
        (3, 20.0, 40.0, (0.25, 0.5)),  # pixels per cm -> 10 / res mm
        (2, 254.0, 127.0, (0.2, 0.1)),  # pixels per inch -> 25.4 / res mm
    ],
)
def test_tiff_resolution_gives_spacing_in_mm(
    tmp_path: Path, unit: int, x_res: float, y_res: float, expected: tuple[float, float]
) -> None:
    path = tmp_path / "r.tif"
    Image.fromarray(_ramp()).save(
        path, x_resolution=x_res, y_resolution=y_res, resolution_unit=unit
    )
    image = read_image(path)
    assert image.spacing == pytest.approx(expected, rel=1e-9)
    assert image.meta["spacing_source"] == "tiff_resolution"
    np.testing.assert_array_equal(image.array, _ramp())
    shape, spacing = read_header(path)
    assert shape == (12, 17)
    assert spacing == pytest.approx(expected, rel=1e-9)


def test_tiff_without_resolution_has_unit_spacing(tmp_path: Path) -> None:
    Image.fromarray(_ramp()).save(tmp_path / "n.tiff")
    assert read_image(tmp_path / "n.tiff").spacing == (1.0, 1.0)
    Image.fromarray(_ramp()).save(
        tmp_path / "u.tiff", x_resolution=5, y_resolution=5, resolution_unit=1
    )
    assert read_image(tmp_path / "u.tiff").spacing == (1.0, 1.0)  # unit "none" is not physical


def test_tiff_16_bit_and_float(tmp_path: Path) -> None:
    wide = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.tif")
    image = read_image(tmp_path / "w.tif")
    assert image.array.dtype == np.uint16
    np.testing.assert_array_equal(image.array, wide)
    real = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)
    Image.fromarray(real).save(tmp_path / "f.tif")
    image = read_image(tmp_path / "f.tif")
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, real)


def test_multipage_tiff_stacks_pages_and_frame_picks_one(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((3, 4), 10 * i, np.uint8)) for i in range(5)]
    path = tmp_path / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    image = read_image(path)
    assert image.array.shape == (5, 3, 4)
    assert [int(p[0, 0]) for p in image.array] == [0, 10, 20, 30, 40]
    assert image.spacing == (1.0, 1.0, 1.0)
    one = read_image(f"{path}#frame=3")
    assert one.array.shape == (3, 4)
    assert int(one.array[0, 0]) == 30
    assert read_header(path) == ((5, 3, 4), (1.0, 1.0, 1.0))
    assert read_header(f"{path}#frame=3") == ((3, 4), (1.0, 1.0))
    with pytest.raises(ImageReadError, match=r"frame 5 is out of range: it holds 5 frames"):
        read_image(f"{path}#frame=5")


def test_jpeg_and_bmp(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(0, 250, 32, dtype=np.uint8), (24, 1))
    rgb = np.stack([smooth, smooth[::-1], np.full_like(smooth, 90)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "a.JPG", quality=95)
    image = read_image(tmp_path / "a.JPG")
    assert image.array.shape == (24, 32, 3)
    assert image.meta["format"] == "jpeg"
    assert np.abs(image.array.astype(int) - rgb).mean() < 3  # lossy
    Image.fromarray(smooth).save(tmp_path / "g.jpeg", quality=95)
    assert read_image(tmp_path / "g.jpeg").array.shape == (24, 32)
    Image.fromarray(rgb).save(tmp_path / "b.bmp")
    image = read_image(tmp_path / "b.bmp")
    np.testing.assert_array_equal(image.array, rgb)
    assert image.spacing == (1.0, 1.0)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp"])
def test_truncated_image_raises_image_read_error_naming_it(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / f"cut{suffix}"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"cut{suffix}"):
        read_image(path)


def test_not_an_image_raises(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("hello")
    with pytest.raises(ImageReadError, match=r"fake\.png"):
        read_image(path)
    with pytest.raises(ImageReadError, match=r"fake\.png"):
        read_header(path)
