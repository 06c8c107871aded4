"""NumPy .npy/.npz and HDF5 reading with key/dataset and index options."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from medfleet.data.io import read_header, read_image
from medfleet.errors import ImageReadError


def _stack(n: int = 6, h: int = 4, w: int = 5, dtype: str = "float32") -> np.ndarray:
    return np.arange(n * h * w, dtype=dtype).reshape(n, h, w)


def test_npy_whole_and_indexed(tmp_path: Path) -> None:
    array = _stack()
    np.save(tmp_path / "a.npy", array)
    image = read_image(tmp_path / "a.npy")
    np.testing.assert_array_equal(image.array, array)
    assert image.spacing == (1.0, 1.0, 1.0)
    assert image.meta["format"] == "npy"
    item = read_image(f"{tmp_path / 'a.npy'}#index=4")
    np.testing.assert_array_equal(item.array, array[4])
    assert item.spacing == (1.0, 1.0)
    assert not isinstance(item.array, np.memmap)
    assert read_header(tmp_path / "a.npy") == ((6, 4, 5), (1.0, 1.0, 1.0))
    assert read_header(f"{tmp_path / 'a.npy'}#index=4") == ((4, 5), (1.0, 1.0))
    with pytest.raises(ImageReadError, match=r"a\.npy: item 6 is out of range: it holds 6 items"):
        read_image(f"{tmp_path / 'a.npy'}#index=6")
    with pytest.raises(ImageReadError, match="not a non-negative integer"):
        read_image(f"{tmp_path / 'a.npy'}#index=-1")


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_key_and_index(tmp_path: Path, compressed: bool) -> None:
    images = _stack(7, 3, 4, "uint8")
    fortran = np.asfortranarray(_stack(3, 2, 2, "int16"))
    save = np.savez_compressed if compressed else np.savez
    path = tmp_path / "x.npz"
    save(path, train_images=images, train_labels=np.arange(7), fortran=fortran)
    for index in (0, 3, 6):
        image = read_image(f"{path}#key=train_images&index={index}")
        np.testing.assert_array_equal(image.array, images[index])
        assert image.array.dtype == np.uint8
        assert image.meta["key"] == "train_images"
        assert image.meta["index"] == index
    whole = read_image(f"{path}#key=train_images")
    np.testing.assert_array_equal(whole.array, images)
    np.testing.assert_array_equal(read_image(f"{path}#key=fortran&index=2").array, fortran[2])
    assert read_header(f"{path}#key=train_images&index=2") == ((3, 4), (1.0, 1.0))
    assert read_header(f"{path}#key=train_images") == ((7, 3, 4), (1.0, 1.0, 1.0))
    with pytest.raises(
        ImageReadError, match=r"x\.npz.*3 arrays \(fortran, train_images, train_labels\)"
    ):
        read_image(path)
    with pytest.raises(
        ImageReadError, match=r"no array named 'test_images'; available: fortran, train_images"
    ):
        read_image(f"{path}#key=test_images")
    with pytest.raises(ImageReadError, match="item 7 is out of range"):
        read_image(f"{path}#key=train_images&index=7")
    with pytest.raises(ImageReadError, match="'dataset' is not supported"):
        read_image(f"{path}#dataset=train_images")


def test_npz_with_one_array_needs_no_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "one.npz", only=_stack())
    np.testing.assert_array_equal(read_image(f"{tmp_path / 'one.npz'}#index=1").array, _stack()[1])


def test_truncated_npy_and_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "cut.npy", _stack(20, 16, 16))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.npy"):
        read_image(tmp_path / "cut.npy")
    np.savez_compressed(tmp_path / "cut.npz", a=np.random.default_rng(0).random((20, 16, 16)))
    data = (tmp_path / "cut.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.npz"):
        read_image(tmp_path / "cut.npz")
    with pytest.raises(ImageReadError, match=r"cut\.npz"):
        read_header(tmp_path / "cut.npz")


def test_npz_member_with_corrupt_data_raises(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", b"\x93NUMPY garbage")
    with pytest.raises(ImageReadError, match=r"bad\.npz"):
        read_image(path)


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match=r"obj\.npy.*allow_pickle"):
        read_image(tmp_path / "obj.npy")


def _h5(path: Path) -> np.ndarray:
    volume = _stack(5, 6, 7, "int16")
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("images/ct", data=volume, chunks=(1, 6, 7))
        ds.attrs["spacing"] = [2.5, 0.7, 0.8]
        f.create_dataset("plain", data=volume[0])
        f.create_dataset("bad_spacing", data=volume).attrs["spacing"] = [1.0, -1.0, 1.0]
        f.create_dataset("labels", data=np.arange(5))
    return volume


def test_hdf5_dataset_index_and_spacing_attribute(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    volume = _h5(path)
    image = read_image(f"{path}#dataset=images/ct")
    np.testing.assert_array_equal(image.array, volume)
    assert image.spacing == (2.5, 0.7, 0.8)
    assert image.meta["spacing_source"] == "attribute"
    assert image.meta["dataset"] == "images/ct"
    item = read_image(f"{path}#dataset=/images/ct&index=3")
    np.testing.assert_array_equal(item.array, volume[3])
    assert item.spacing == (0.7, 0.8)
    plain = read_image(f"{path}#dataset=plain")
    assert plain.spacing == (1.0, 1.0)
    assert plain.meta["spacing_source"] == "default"
    assert read_header(f"{path}#dataset=images/ct&index=3") == ((6, 7), (0.7, 0.8))
    assert read_header(f"{path}#dataset=images/ct") == ((5, 6, 7), (2.5, 0.7, 0.8))


def test_hdf5_errors_list_available_datasets(tmp_path: Path) -> None:
    path = tmp_path / "d.hdf5"
    _h5(path)
    with pytest.raises(
        ImageReadError, match=r"d\.hdf5.*4 datasets \(bad_spacing, images/ct, labels, plain\)"
    ):
        read_image(path)
    with pytest.raises(
        ImageReadError, match=r"'nope' is not in the file; available datasets: bad_spacing"
    ):
        read_image(f"{path}#dataset=nope")
    with pytest.raises(ImageReadError, match="'images' is a group"):
        read_image(f"{path}#dataset=images")
    with pytest.raises(ImageReadError, match="unusable 'spacing' attribute"):
        read_image(f"{path}#dataset=bad_spacing")
    with pytest.raises(ImageReadError, match="item 5 is out of range"):
        read_image(f"{path}#dataset=images/ct&index=5")


def test_truncated_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "cut.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img", data=np.random.default_rng(0).random((32, 32, 32)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.h5"):
        read_image(f"{path}#dataset=img")
