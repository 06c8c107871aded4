"""NIfTI reading and writing: spacing, affine, index order, reproducible bytes, corrupt files."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medfleet.data.io import ImageWriteError, read_header, read_image, write_nifti
from medfleet.errors import ImageReadError


def _volume(shape: tuple[int, ...], dtype: str = "int16") -> np.ndarray:
    rng = np.random.default_rng(sum(shape))
    return rng.integers(-1000, 1000, size=shape).astype(dtype)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_3d_round_trip_keeps_values_index_order_and_anisotropic_spacing(
    tmp_path: Path, suffix: str
) -> None:
    array = _volume((7, 5, 3))
    path = write_nifti(tmp_path / f"v{suffix}", array, (0.7, 1.25, 3.5))
    image = read_image(path)
    np.testing.assert_array_equal(image.array, array)
    assert image.array.dtype == np.int16
    assert image.spacing == (0.7, 1.25, 3.5)
    assert image.ndim_spatial == 3
    assert image.meta["format"] == "nifti"
    assert image.meta["channel_axis"] is None
    np.testing.assert_allclose(image.meta["affine"], np.diag([0.7, 1.25, 3.5, 1.0]))
    # independent oracle: nibabel itself
    ref = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(ref.dataobj), array)
    np.testing.assert_allclose(ref.header.get_zooms(), (0.7, 1.25, 3.5), rtol=1e-6)
    assert read_header(path) == ((7, 5, 3), (0.7, 1.25, 3.5))


def test_2d_round_trip(tmp_path: Path) -> None:
    array = _volume((6, 9), "float32")
    path = write_nifti(tmp_path / "slice.nii.gz", array, (0.5, 2.0))
    image = read_image(path)
    assert image.array.shape == (6, 9)
    assert image.spacing == (0.5, 2.0)
    np.testing.assert_array_equal(image.array, array)
    assert read_header(path) == ((6, 9), (0.5, 2.0))


def test_4d_keeps_time_axis_and_its_spacing(tmp_path: Path) -> None:
    array = _volume((4, 5, 3, 6), "uint8")
    path = write_nifti(tmp_path / "cine.nii.gz", array, (1.5, 1.5, 8.0, 0.04))
    image = read_image(path)
    assert image.array.shape == (4, 5, 3, 6)
    assert image.spacing == pytest.approx((1.5, 1.5, 8.0, 0.04))
    assert image.meta["time_axis"] == 3


@pytest.mark.parametrize(
    ("unit", "zooms"), [("micron", (500.0, 250.0, 2000.0)), ("meter", (5e-4, 2.5e-4, 2e-3))]
)
def test_spacing_is_converted_to_mm_from_header_units(
    tmp_path: Path, unit: str, zooms: tuple[float, float, float]
) -> None:
    image = nib.Nifti1Image(np.zeros((2, 3, 4), np.uint8), np.diag([*zooms, 1.0]))
    image.header.set_xyzt_units(unit, "sec")
    nib.save(image, tmp_path / "u.nii")
    read = read_image(tmp_path / "u.nii")
    assert read.spacing == pytest.approx((0.5, 0.25, 2.0), rel=1e-6)
    assert read_header(tmp_path / "u.nii")[1] == read.spacing
    assert any(unit in w for w in read.meta["warnings"])


def test_explicit_affine_is_stored_and_checked_against_spacing(tmp_path: Path) -> None:
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.array([0.8, 0.9, 4.0])  # scales columns
    affine[:3, 3] = [10.0, -20.0, 5.0]
    path = write_nifti(tmp_path / "r.nii.gz", _volume((3, 4, 5)), (0.8, 0.9, 4.0), affine)
    image = read_image(path)
    np.testing.assert_allclose(image.meta["affine"], affine, atol=1e-6)
    assert image.spacing == (0.8, 0.9, 4.0)
    with pytest.raises(ImageWriteError, match="disagree with spacing"):
        write_nifti(tmp_path / "bad.nii.gz", _volume((3, 4, 5)), (1.0, 1.0, 1.0), affine)


def test_gz_output_is_byte_identical_and_has_no_timestamp_or_name(tmp_path: Path) -> None:
    array = _volume((8, 8, 4), "float32")
    a = write_nifti(tmp_path / "a.nii.gz", array, (1.0, 1.0, 2.5))
    b = write_nifti(tmp_path / "sub" / "b.nii.gz", array.copy(), (1.0, 1.0, 2.5))
    assert a.read_bytes() == b.read_bytes()
    raw = a.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert raw[4:8] == b"\x00\x00\x00\x00"  # MTIME field
    assert raw[3] & 0x08 == 0  # FNAME flag unset: no temporary file name leaks in
    assert len(gzip.decompress(raw)) >= 352 + array.nbytes
    c = write_nifti(tmp_path / "c.nii.gz", array, (1.0, 1.0, 2.6))
    assert c.read_bytes() != raw


def test_uncompressed_output_is_byte_identical(tmp_path: Path) -> None:
    array = _volume((4, 4, 4))
    a = write_nifti(tmp_path / "a.nii", array, (1.0, 2.0, 3.0))
    b = write_nifti(tmp_path / "b.nii", array, (1.0, 2.0, 3.0))
    assert a.read_bytes() == b.read_bytes()


def test_write_converts_bool_and_int64(tmp_path: Path) -> None:
    mask = np.zeros((3, 3, 2), bool)
    mask[1, 1, 0] = True
    image = read_image(write_nifti(tmp_path / "m.nii.gz", mask, (1.0, 1.0, 1.0)))
    assert image.array.dtype == np.uint8
    np.testing.assert_array_equal(image.array, mask.astype(np.uint8))
    labels = np.arange(18, dtype=np.int64).reshape(3, 3, 2)
    image = read_image(write_nifti(tmp_path / "l.nii.gz", labels, (1.0, 1.0, 1.0)))
    assert image.array.dtype == np.int32
    np.testing.assert_array_equal(image.array, labels)


@pytest.mark.parametrize(
    ("name", "spacing", "match"),
    [
        ("x.nii.gz", (1.0, 1.0), "3 spatial axes"),
        ("x.nii.gz", (1.0, 0.0, 1.0), "finite and > 0"),
        ("x.nii.gz", (1.0, float("nan"), 1.0), "finite and > 0"),
        ("x.png", (1.0, 1.0, 1.0), r"\.nii or \.nii\.gz"),
    ],
)
def test_write_rejects_bad_input(tmp_path: Path, name: str, spacing: tuple, match: str) -> None:
    with pytest.raises(ImageWriteError, match=match):
        write_nifti(tmp_path / name, np.zeros((2, 2, 2)), spacing)
    assert not (tmp_path / name).exists()


def test_failed_write_leaves_previous_file_intact(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "keep.nii.gz", np.ones((2, 2, 2), np.uint8), (1.0, 1.0, 1.0))
    before = path.read_bytes()
    with pytest.raises(ImageWriteError):
        write_nifti(path, np.array([["a"]], dtype=object), (1.0, 1.0))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz"]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_file_raises_image_read_error_naming_it(tmp_path: Path, suffix: str) -> None:
    path = write_nifti(tmp_path / f"cut{suffix}", _volume((16, 16, 8)), (1.0, 1.0, 1.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"cut{suffix}") as info:
        read_image(path)
    assert info.value.__cause__ is not None or "truncated" in info.value.reason


def test_garbage_nifti_raises_image_read_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.nii.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(ImageReadError, match=r"noise\.nii\.gz"):
        read_image(path)
    with pytest.raises(ImageReadError, match=r"noise\.nii\.gz"):
        read_header(path)


def test_options_are_refused_for_nifti(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "v.nii.gz", _volume((2, 2, 2)), (1.0, 1.0, 1.0))
    with pytest.raises(ImageReadError, match="'frame' is not supported for NIfTI"):
        read_image(f"{path}#frame=1")


@pytest.mark.data
def test_cardiac_mr_samples_match_nibabel(shared_data: Path) -> None:
    folder = shared_data / "cardiac_mr_samples"
    files = sorted(folder.glob("*/*.nii.gz"))
    if not files:
        pytest.skip("cardiac_mr_samples not present")
    for path in files:
        ref = nib.load(str(path))
        image = read_image(path)
        assert image.array.shape == ref.shape, path
        np.testing.assert_array_equal(image.array, np.asarray(ref.dataobj))
        np.testing.assert_allclose(
            image.spacing, ref.header.get_zooms()[: len(ref.shape)], rtol=1e-6
        )
        np.testing.assert_allclose(image.meta["affine"], ref.affine)
        shape, spacing = read_header(path)
        assert shape == ref.shape
        assert spacing == image.spacing
    # the table in SOURCE.md
    acdc = read_image(folder / "acdc" / "sax_ed.nii.gz")
    assert acdc.array.shape == (192, 192, 10)
    assert acdc.spacing == (1.0, 1.0, 10.0)
    assert acdc.array.dtype == np.uint8
