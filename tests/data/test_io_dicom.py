"""DICOM files (pydicom's bundled test data) and series folders written by the tests."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medfleet.data.io import read_dicom_series, read_header, read_image
from medfleet.errors import ImageReadError

ROWS, COLS = 6, 5
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)  # never reach the network
    if path is None:
        pytest.skip(f"pydicom test file {name} not bundled")
    return Path(path)


def _pattern(value: int) -> np.ndarray:
    pixels = np.full((ROWS, COLS), value, np.int16)
    pixels[0, :] = -7  # first row marks orientation
    pixels[:, -1] = 3
    return pixels


def _write_slice(
    path: Path,
    value: int,
    *,
    series_uid: str,
    position: Sequence[float] | None = None,
    orientation: Sequence[float] | None = AXIAL,
    instance: int | None = None,
    spacing: Sequence[float] = (0.7, 0.8),
    slope: float | None = None,
    intercept: float | None = None,
    frames: int = 1,
    extra: dict | None = None,
) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Manufacturer = "ACME Medical"
    ds.PatientName = "Test^Person"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = f"series {series_uid[-3:]}"
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing = [str(s) for s in spacing]
    ds.SliceThickness = "1.0"
    if position is not None:
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
    if instance is not None:
        ds.InstanceNumber = instance
    if slope is not None:
        ds.RescaleSlope = str(slope)
    if intercept is not None:
        ds.RescaleIntercept = str(intercept)
    for key, val in (extra or {}).items():
        setattr(ds, key, val)
    if frames > 1:
        ds.NumberOfFrames = frames
        pixels = np.stack([_pattern(value + 10 * i) for i in range(frames)])
    else:
        pixels = _pattern(value)
    ds.PixelData = pixels.astype("<i2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _oblique() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    angle = np.deg2rad(30)
    row_cos = np.array([1.0, 0.0, 0.0])
    col_cos = np.array([0.0, np.cos(angle), np.sin(angle)])
    return row_cos, col_cos, np.cross(row_cos, col_cos)


def _series(folder: Path, n: int = 7, gap: float = 2.5, **kwargs: object) -> list[np.ndarray]:
    """Write n slices with scrambled names and reversed instance numbers; return positions."""
    folder.mkdir(parents=True, exist_ok=True)
    row_cos, col_cos, normal = _oblique()
    origin = np.array([-30.0, 12.5, 100.0])
    names = [f"{(k * 7919) % 1000:03d}x" for k in range(n)]  # scrambled vs position order
    shuffle = np.random.default_rng(3).permutation(n)
    positions = []
    for k in shuffle:
        position = origin + k * gap * normal
        positions.append((k, position))
        _write_slice(
            folder / f"{names[k]}.dcm",
            100 * k,
            series_uid="1.2.3.4.5.100",
            position=position,
            orientation=(*row_cos, *col_cos),
            instance=n - k,  # instance numbers run against the positions
            **kwargs,
        )
    return [p for _, p in sorted(positions, key=lambda kp: kp[0])]


def test_series_is_sorted_by_position_along_the_normal(tmp_path: Path) -> None:
    positions = _series(tmp_path / "ct")
    (tmp_path / "ct" / "README.txt").write_text("not a dicom file")
    volume = read_image(tmp_path / "ct")
    assert volume.array.shape == (7, ROWS, COLS)
    assert volume.array.dtype == np.int16  # no rescale tags -> raw values kept
    for k in range(7):
        np.testing.assert_array_equal(volume.array[k], _pattern(100 * k))
    assert volume.spacing == pytest.approx((2.5, 0.7, 0.8), rel=1e-6)
    assert volume.meta["format"] == "dicom_series"
    assert volume.meta["modality"] == "CT"
    assert volume.meta["manufacturer"] == volume.meta["vendor"] == "ACME Medical"
    assert volume.meta["series_uid"] == "1.2.3.4.5.100"
    assert volume.meta["order_source"] == "ImagePositionPatient"
    assert volume.meta["skipped_files"] == ["README.txt"]
    assert volume.meta["warnings"] == []
    assert "Test^Person" not in repr(volume.meta)
    # the affine maps (slice, row, col) indices to patient coordinates
    row_cos, col_cos, _ = _oblique()
    affine = np.asarray(volume.meta["affine_lps"])
    for k, r, c in [(0, 0, 0), (3, 2, 4), (6, 5, 1)]:
        expected = positions[k] + c * 0.8 * row_cos + r * 0.7 * col_cos
        np.testing.assert_allclose((affine @ [k, r, c, 1])[:3], expected, atol=1e-4)
    assert read_header(tmp_path / "ct") == (volume.array.shape, volume.spacing)
    direct = read_dicom_series(tmp_path / "ct")
    np.testing.assert_array_equal(direct.array, volume.array)


def test_series_rescale_is_applied_per_slice(tmp_path: Path) -> None:
    folder = tmp_path / "hu"
    folder.mkdir()
    for k, (slope, intercept) in enumerate([(1.0, -1024.0), (2.0, -1000.0), (0.5, 0.0)]):
        _write_slice(
            folder / f"s{k}.dcm",
            10 * k,
            series_uid="1.9",
            position=(0, 0, 3.0 * k),
            slope=slope,
            intercept=intercept,
        )
    volume = read_dicom_series(folder)
    assert volume.array.dtype == np.float32
    assert volume.meta["rescaled"] is True
    np.testing.assert_array_equal(volume.array[0], _pattern(0) * 1.0 - 1024.0)
    np.testing.assert_array_equal(volume.array[1], _pattern(10) * 2.0 - 1000.0)
    np.testing.assert_array_equal(volume.array[2], _pattern(20) * 0.5)
    assert volume.spacing == pytest.approx((3.0, 0.7, 0.8))


def test_identity_rescale_keeps_integers(tmp_path: Path) -> None:
    folder = tmp_path / "id"
    folder.mkdir()
    for k in range(2):
        _write_slice(
            folder / f"{k}.dcm", k, series_uid="1.8", position=(0, 0, k), slope=1, intercept=0
        )
    volume = read_dicom_series(folder)
    assert volume.array.dtype == np.int16
    assert volume.meta["rescaled"] is False


def test_two_series_in_one_folder_are_refused_with_both_uids(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write_slice(folder / "a.dcm", 1, series_uid="1.2.777", position=(0, 0, 0))
    _write_slice(folder / "b.dcm", 1, series_uid="1.2.888", position=(0, 0, 1))
    _write_slice(folder / "c.dcm", 1, series_uid="1.2.888", position=(0, 0, 2))
    with pytest.raises(ImageReadError) as info:
        read_image(folder)
    message = str(info.value)
    assert "mixed" in message
    assert "1.2.777 (1 files" in message
    assert "1.2.888 (2 files" in message
    assert "one series" in message


def test_uneven_gaps_warn_and_use_the_median(tmp_path: Path) -> None:
    folder = tmp_path / "gaps"
    folder.mkdir()
    for k, z in enumerate([0.0, 2.0, 4.0, 6.0, 9.0]):
        _write_slice(folder / f"{k}.dcm", k, series_uid="1.7", position=(5, 5, z))
    volume = read_dicom_series(folder)
    assert volume.spacing[0] == pytest.approx(2.0)
    assert volume.meta["slice_positions"] == pytest.approx([0.0, 2.0, 4.0, 6.0, 9.0])
    assert any("uneven slice spacing" in w for w in volume.meta["warnings"])


def test_even_gaps_within_one_percent_do_not_warn(tmp_path: Path) -> None:
    folder = tmp_path / "even"
    folder.mkdir()
    for k, z in enumerate([0.0, 2.0, 4.01, 6.0]):
        _write_slice(folder / f"{k}.dcm", k, series_uid="1.7", position=(5, 5, z))
    assert read_dicom_series(folder).meta["warnings"] == []


def test_two_slices_at_one_position_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cine"
    folder.mkdir()
    _write_slice(folder / "t0.dcm", 1, series_uid="1.6", position=(0, 0, 0))
    _write_slice(folder / "t1.dcm", 2, series_uid="1.6", position=(0, 0, 0))
    with pytest.raises(ImageReadError, match=r"t0\.dcm and t1\.dcm lie at the same slice position"):
        read_dicom_series(folder)


def test_without_positions_instance_number_orders_the_slices(tmp_path: Path) -> None:
    folder = tmp_path / "noposition"
    folder.mkdir()
    for name, instance in [("a", 3), ("b", 1), ("c", 2)]:
        _write_slice(
            folder / f"{name}.dcm",
            10 * instance,
            series_uid="1.5",
            orientation=None,
            instance=instance,
            extra={"SpacingBetweenSlices": "4.0"},
        )
    volume = read_dicom_series(folder)
    assert [int(volume.array[k, 2, 2]) for k in range(3)] == [10, 20, 30]
    assert volume.meta["files"] == ["b.dcm", "c.dcm", "a.dcm"]
    assert volume.spacing == pytest.approx((4.0, 0.7, 0.8))
    assert any("ordered by InstanceNumber" in w for w in volume.meta["warnings"])


def test_files_without_suffix_are_read_by_preamble(tmp_path: Path) -> None:
    folder = tmp_path / "nosuffix"
    folder.mkdir()
    for k in range(3):
        _write_slice(folder / f"IM{k:04d}", k, series_uid="1.4", position=(0, 0, 1.5 * k))
    volume = read_image(folder)
    assert volume.array.shape == (3, ROWS, COLS)
    assert volume.spacing[0] == pytest.approx(1.5)
    single = read_image(folder / "IM0001")
    assert single.meta["format"] == "dicom"
    np.testing.assert_array_equal(single.array, _pattern(1))


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ImageReadError, match="no DICOM image files"):
        read_image(tmp_path / "empty")
    with pytest.raises(ImageReadError, match="folder not found"):
        read_dicom_series(tmp_path / "absent")


def test_truncated_slice_in_a_series_is_named(tmp_path: Path) -> None:
    _series(tmp_path / "cut", n=3)
    victim = sorted((tmp_path / "cut").iterdir())[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 20])
    with pytest.raises(ImageReadError, match=victim.name):
        read_dicom_series(tmp_path / "cut")


def test_ct_small_spacing_and_rescale_match_the_tags() -> None:
    path = _bundled("CT_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.array.shape == (int(ds.Rows), int(ds.Columns))
    assert image.spacing == (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, expected.astype(np.float32))
    assert image.meta["modality"] == "CT"
    assert image.meta["rescaled"] is True
    assert image.meta["series_uid"] == str(ds.SeriesInstanceUID)
    assert image.meta["manufacturer"] == str(ds.Manufacturer)
    assert read_header(path) == (image.array.shape, image.spacing)


def test_mr_small_without_rescale_keeps_raw_values() -> None:
    path = _bundled("MR_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    np.testing.assert_array_equal(image.array, ds.pixel_array)
    assert image.array.dtype == ds.pixel_array.dtype
    assert image.spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert image.meta["modality"] == "MR"
    assert image.meta["rescaled"] is False


def test_multiframe_rtdose_frames_and_frame_spacing() -> None:
    path = _bundled("rtdose.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    frames = int(ds.NumberOfFrames)
    assert image.array.shape == (frames, int(ds.Rows), int(ds.Columns))
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert image.spacing == (offsets[1] - offsets[0], *(float(v) for v in ds.PixelSpacing))
    assert image.meta["n_frames"] == frames
    np.testing.assert_array_equal(image.array, ds.pixel_array)
    one = read_image(f"{path}#frame=4")
    np.testing.assert_array_equal(one.array, ds.pixel_array[4])
    assert one.spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert read_header(f"{path}#frame=4") == (one.array.shape, one.spacing)
    with pytest.raises(ImageReadError, match=rf"rtdose\.dcm: frame {frames} is out of range"):
        read_image(f"{path}#frame={frames}")


def test_multiframe_spacing_between_slices(tmp_path: Path) -> None:
    path = _write_slice(
        tmp_path / "mf.dcm",
        0,
        series_uid="1.3",
        position=(0, 0, 0),
        frames=4,
        extra={"SpacingBetweenSlices": "3.0"},
    )
    image = read_image(path)
    assert image.array.shape == (4, ROWS, COLS)
    assert image.spacing == pytest.approx((3.0, 0.7, 0.8))
    for i in range(4):
        np.testing.assert_array_equal(image.array[i], _pattern(10 * i))


def test_folder_with_one_multiframe_file_reads_that_file(tmp_path: Path) -> None:
    (tmp_path / "enhanced").mkdir()
    _write_slice(
        tmp_path / "enhanced" / "mf.dcm",
        0,
        series_uid="1.3",
        frames=3,
        extra={"SpacingBetweenSlices": "2.0"},
    )
    image = read_image(tmp_path / "enhanced")
    assert image.array.shape == (3, ROWS, COLS)
    assert image.spacing == pytest.approx((2.0, 0.7, 0.8))
    assert read_header(tmp_path / "enhanced") == ((3, ROWS, COLS), image.spacing)
    _write_slice(tmp_path / "enhanced" / "second.dcm", 0, series_uid="1.3", frames=2)
    with pytest.raises(ImageReadError, match="multi-frame files"):
        read_image(tmp_path / "enhanced")


def test_rgb_dicom_has_channel_axis() -> None:
    path = _bundled("SC_rgb_small_odd.dcm")
    image = read_image(path)
    assert image.array.shape == (3, 3, 3)
    assert image.meta["channel_axis"] == -1
    assert image.ndim_spatial == 2
    np.testing.assert_array_equal(image.array, pydicom.dcmread(path).pixel_array)


def test_undecodable_transfer_syntax_explains_the_fix() -> None:
    path = _bundled("JPEG-lossy.dcm")
    try:
        pydicom.dcmread(path).pixel_array  # noqa: B018
    except Exception:
        pass
    else:
        pytest.skip("a decoder for JPEG Extended is installed")
    with pytest.raises(
        ImageReadError, match=r"JPEG-lossy\.dcm: cannot decode pixel data.*fix: install"
    ):
        read_image(path)


def test_truncated_dicom_files(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"MR_truncated\.dcm"):
        read_image(_bundled("MR_truncated.dcm"))
    copy = tmp_path / "ct_cut.dcm"
    data = _bundled("CT_small.dcm").read_bytes()
    copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"ct_cut\.dcm"):
        read_image(copy)
    head = tmp_path / "header_cut.dcm"
    head.write_bytes(data[:300])
    with pytest.raises(ImageReadError, match=r"header_cut\.dcm"):
        read_image(head)


def test_file_without_suffix_and_without_preamble_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "scan"
    path.write_bytes(b"\x00" * 200)
    with pytest.raises(ImageReadError, match="unknown image format"):
        read_image(path)


def test_dicom_copied_without_suffix(tmp_path: Path) -> None:
    target = tmp_path / "1.2.840.113619.2.55"  # a UID-like name: its "suffix" means nothing
    shutil.copy(_bundled("CT_small.dcm"), target)
    assert read_image(target).array.shape == (128, 128)
