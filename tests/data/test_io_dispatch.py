"""Image references, format dispatch, spacing overrides, ImageData and error wrapping."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medfleet.data.io import (
    ImageData,
    detect_format,
    parse_image_ref,
    read_header,
    read_image,
    write_nifti,
    write_png,
)
from medfleet.errors import ImageReadError


@pytest.mark.parametrize(
    ("ref", "path", "options"),
    [
        ("video.mp4#frame=12", "video.mp4", {"frame": "12"}),
        ("x.npz#key=train_images&index=5", "x.npz", {"key": "train_images", "index": "5"}),
        ("x.h5#dataset=img&index=3", "x.h5", {"dataset": "img", "index": "3"}),
        ("dir/scan.nii.gz", "dir/scan.nii.gz", {}),
        ("x.h5#dataset=a%26b", "x.h5", {"dataset": "a&b"}),
        ("x.npz#", "x.npz", {}),
        ("x.npz# key = a &", "x.npz", {"key": "a"}),
        (Path("p/q.png"), "p/q.png", {}),
    ],
)
def test_parse_image_ref(ref: str | Path, path: str, options: dict[str, str]) -> None:
    assert parse_image_ref(ref) == (Path(path), options)


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("x.npz#key", "malformed reference option 'key'"),
        ("x.npz#=3", "malformed"),
        ("x.npz#index=1&index=2", "'index' is given twice"),
        ("#frame=1", "no file path before"),
    ],
)
def test_parse_image_ref_rejects_malformed_options(ref: str, match: str) -> None:
    with pytest.raises(ImageReadError, match=match):
        parse_image_ref(ref)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.nii", "nifti"),
        ("a.NII.GZ", "nifti"),
        ("a.dcm", "dicom"),
        ("a.PNG", "raster"),
        ("a.jpeg", "raster"),
        ("a.TIF", "raster"),
        ("a.bmp", "raster"),
        ("a.npy", "npy"),
        ("a.npz", "npz"),
        ("a.hdf5", "hdf5"),
        ("a.H5", "hdf5"),
        ("a.MOV", "video"),
        ("a.mkv", "video"),
    ],
)
def test_detect_format_by_suffix_case_insensitive(name: str, kind: str) -> None:
    assert detect_format(Path(name)) == kind


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(ImageReadError, match=r"table\.csv: unknown image format \.csv.*\.nii\.gz"):
        read_image(tmp_path / "table.csv")
    with pytest.raises(ImageReadError, match=r"gone\.png: file not found"):
        read_image(tmp_path / "gone.png")
    with pytest.raises(ImageReadError, match=r"gone: file not found"):
        read_header(tmp_path / "gone")


def test_spacing_override(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "v.nii.gz", np.zeros((3, 4, 5), np.uint8), (1.0, 1.0, 1.0))
    image = read_image(path, spacing=[0.5, 0.6, 2])
    assert image.spacing == (0.5, 0.6, 2.0)
    assert image.meta["spacing_source"] == "override"
    assert image.meta["file_spacing"] == (1.0, 1.0, 1.0)
    rgb = write_png(tmp_path / "c.png", np.zeros((4, 6, 3), np.uint8))
    assert read_image(rgb, spacing=(0.1, 0.2)).spacing == (0.1, 0.2)
    for bad, match in [
        ((1.0, 1.0), "2 values but the image has 3 spatial axes"),
        ((1.0, 0.0, 1.0), "finite and > 0"),
        ((1.0, float("inf"), 1.0), "finite and > 0"),
        ((1.0, -2.0, 1.0), "finite and > 0"),
        (("a", 1, 1), "sequence of numbers"),
    ]:
        with pytest.raises(ImageReadError, match=r"v\.nii\.gz: spacing override rejected") as info:
            read_image(path, spacing=bad)
        assert match in str(info.value)
    with pytest.raises(ImageReadError, match="3 values but the image has 2 spatial axes"):
        read_image(rgb, spacing=(1.0, 1.0, 1.0))


def test_image_data_checks_spacing_against_spatial_axes() -> None:
    image = ImageData(np.zeros((4, 5, 3)), (1, 2), {"channel_axis": -1})
    assert image.ndim_spatial == 2
    assert image.spacing == (1.0, 2.0)
    assert ImageData(np.zeros((4, 5, 3)), (1, 2, 3), {}).ndim_spatial == 3
    with pytest.raises(ValueError, match="3 spatial axes"):
        ImageData(np.zeros((4, 5, 3)), (1, 2), {})
    with pytest.raises(ValueError, match="channel_axis"):
        ImageData(np.zeros((4, 5, 3)), (1, 2), {"channel_axis": 0})
    with pytest.raises(AttributeError):
        image.spacing = (3.0, 3.0)  # type: ignore[misc]


def _every_format(folder: Path) -> list[str]:
    """One small file per reader, as references; a mix of options."""
    refs = []
    refs.append(
        str(write_nifti(folder / "v.nii.gz", np.zeros((5, 6, 7), np.int16), (0.5, 0.6, 3.0)))
    )
    refs.append(str(write_png(folder / "c.png", np.zeros((9, 8, 3), np.uint8))))
    Image.fromarray(np.zeros((7, 3), np.uint8)).save(
        folder / "r.tif", x_resolution=10, y_resolution=20, resolution_unit=3
    )
    refs.append(str(folder / "r.tif"))
    np.save(folder / "a.npy", np.zeros((4, 3, 2)))
    refs += [str(folder / "a.npy"), f"{folder / 'a.npy'}#index=1"]
    np.savez(folder / "z.npz", images=np.zeros((6, 5, 4), np.uint8), labels=np.arange(6))
    refs += [f"{folder / 'z.npz'}#key=images", f"{folder / 'z.npz'}#key=images&index=2"]
    with h5py.File(folder / "d.h5", "w") as f:
        f.create_dataset("img", data=np.zeros((3, 4, 5))).attrs["spacing"] = [2.0, 1.0, 0.5]
    refs += [f"{folder / 'd.h5'}#dataset=img", f"{folder / 'd.h5'}#dataset=img&index=1"]
    ct = get_testdata_file("CT_small.dcm", download=False)
    if ct is not None:
        shutil.copy(ct, folder / "ct.dcm")
        refs.append(str(folder / "ct.dcm"))
    with av.open(str(folder / "v.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=5)
        stream.width, stream.height, stream.pix_fmt = 16, 8, "gray"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((8, 16), i, np.uint8), format="gray")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    refs += [str(folder / "v.mkv"), f"{folder / 'v.mkv'}#frame=2"]
    return refs


def test_read_header_agrees_with_read_image_for_every_format(tmp_path: Path) -> None:
    refs = _every_format(tmp_path)
    assert len(refs) >= 12
    for ref in refs:
        image = read_image(ref)
        assert read_header(ref) == (image.spatial_shape, image.spacing), ref
        assert image.meta["ref"] == ref
        assert image.meta["path"] == ref.partition("#")[0]


@pytest.mark.parametrize(
    "name",
    [
        "e.nii",
        "e.nii.gz",
        "e.dcm",
        "e.png",
        "e.jpg",
        "e.tif",
        "e.bmp",
        "e.npy",
        "e.npz",
        "e.h5",
        "e.avi",
        "e.mp4",
    ],
)
@pytest.mark.parametrize("content", [b"", b"\x00garbage\xff" * 50])
def test_empty_or_garbage_files_raise_image_read_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for reader in (read_image, read_header):
        with pytest.raises(ImageReadError) as info:
            reader(path)
        assert info.type is ImageReadError
        assert name in str(info.value)
