"""Property-based fuzzing of the image readers: bad bytes read or raise medfleet's own error.

Every supported suffix gets random bytes, and truncated, bit-flipped and overwritten versions
of a small valid file. ``read_image`` and ``read_header`` must then either return an image or
raise :class:`~medfleet.errors.ImageReadError` naming the file: never another exception
type (a library's ``ValueError``, ``struct.error``, ``KeyError``...), never a hang.

Examples are derandomised so a run is repeatable; ``MEDFLEET_FUZZ_EXAMPLES`` raises the
number of examples per format for a longer local hunt.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.data import get_testdata_file

from medfleet.data.io import read_header, read_image, write_nifti, write_png
from medfleet.errors import ImageReadError, MedfleetError

# damaged files make the libraries warn (pydicom about invalid values, Pillow about corrupt
# EXIF); what is checked here is the outcome, so their warnings are noise
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

EXAMPLES = int(os.environ.get("MEDFLEET_FUZZ_EXAMPLES", "100"))
PER_READ_LIMIT_S = 10  # a reader that takes longer on a file of a few kB is hung

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,  # the alarm below is the hang check; first calls import libraries
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _video(path: Path, codec: str, pix_fmt: str) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=5)
        stream.width, stream.height, stream.pix_fmt = 16, 16, pix_fmt
        stream.codec_context.gop_size = 2
        for i in range(4):
            rgb = np.zeros((16, 16, 3), np.uint8)
            rgb[: 4 + 2 * i, :8] = 200
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def _make_samples(folder: Path) -> dict[str, Path]:
    """One small valid file per suffix (the seeds that the mutations start from)."""
    grey = (np.arange(16 * 16).reshape(16, 16) % 251).astype(np.uint8)
    samples = {
        "png": write_png(folder / "a.png", grey),
        "nii": write_nifti(folder / "a.nii", grey.reshape(4, 8, 8).astype(np.int16), (1, 1, 2)),
        "nii.gz": write_nifti(folder / "a.nii.gz", grey.reshape(4, 8, 8), (0.5, 0.5, 2)),
        "npy": folder / "a.npy",
        "npz": folder / "a.npz",
        "h5": folder / "a.h5",
        "jpg": folder / "a.jpg",
        "tif": folder / "a.tif",
        "mp4": folder / "a.mp4",
        "avi": folder / "a.avi",
        "dcm": Path(get_testdata_file("MR_small.dcm", download=False)),
    }
    np.save(samples["npy"], grey)
    np.savez_compressed(samples["npz"], images=grey.reshape(4, 8, 8))
    with h5py.File(samples["h5"], "w") as handle:
        handle.create_dataset("img", data=grey.reshape(2, 8, 16)).attrs["spacing"] = [2, 1, 1]
    Image.fromarray(grey).save(samples["jpg"], quality=90)
    pages = [Image.fromarray(grey), Image.fromarray(255 - grey)]
    pages[0].save(samples["tif"], save_all=True, append_images=pages[1:], dpi=(254, 254))
    _video(samples["mp4"], "mpeg4", "yuv420p")
    _video(samples["avi"], "mjpeg", "yuvj420p")
    return samples


@functools.cache
def _seeds() -> dict[str, bytes]:
    """The valid seed files' bytes, made once (a cache, not a fixture: shorter failure reports)."""
    with tempfile.TemporaryDirectory() as folder:
        paths = _make_samples(Path(folder))
        seeds = {suffix: path.read_bytes() for suffix, path in paths.items()}
        for suffix, path in paths.items():  # the mutations start from files that read cleanly
            assert read_image(path).array.size > 0, suffix
    return seeds


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


SUFFIXES = ("png", "jpg", "tif", "nii", "nii.gz", "dcm", "npy", "npz", "h5", "mp4", "avi")
_names = itertools.count()


class ReaderHung(Exception):
    """A reader ran past :data:`PER_READ_LIMIT_S`."""


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise ReaderHung(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _check_reads_or_refuses(folder: Path, suffix: str, data: bytes) -> None:
    path = folder / f"f{next(_names)}.{suffix}"
    path.write_bytes(data)
    refs = [str(path)]
    if suffix in ("mp4", "avi", "tif"):
        refs.append(f"{path}#frame=1")
    if suffix in ("npy", "npz", "h5"):
        refs.append(f"{path}#index=1")
    try:
        for ref in refs:
            for reader in (read_header, read_image):
                try:
                    with _time_limit(PER_READ_LIMIT_S):
                        result = reader(ref)
                except ImageReadError as err:
                    assert str(path) in str(err), f"{reader.__name__}({ref}): {err}"
                except MedfleetError:
                    pass
                except ReaderHung as err:
                    pytest.fail(f"{reader.__name__}({ref}) hung on {data[:64]!r}...: {err}")
                except Exception as exc:  # the property: nothing else escapes
                    raise AssertionError(
                        f"{reader.__name__}({ref}) raised {type(exc).__name__}: {exc} "
                        f"(file of {len(data)} bytes: {data[:48]!r}...)"
                    ) from exc
                else:
                    assert result is not None
    finally:
        path.unlink()


@dataclass(frozen=True)
class Mutation:
    """How a valid file is damaged (small, so a failing example prints readably)."""

    kind: str  # truncate, flip, overwrite, header or number
    at: int = 0
    patch: bytes = b""
    flips: tuple[tuple[int, int], ...] = ()

    def apply(self, seed: bytes) -> bytes:
        data = bytearray(seed)
        if self.kind == "truncate":
            return bytes(data[: self.at])
        if self.kind == "flip":
            for i, mask in self.flips:
                data[i] ^= mask
            return bytes(data)
        if self.kind == "number":  # a size field written as text (.npy headers) made huge
            runs = list(re.finditer(rb"\d+", bytes(data[:512])))
            if runs:
                run = runs[self.at % len(runs)]
                data[run.start() : run.end()] = self.patch
            return bytes(data)
        data[self.at : self.at + len(self.patch)] = self.patch
        return bytes(data)


@st.composite
def _mutations(draw: st.DrawFn, size: int) -> Mutation:
    """Truncation, bit flips, a run of bytes overwritten anywhere or in the header."""
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "header", "number"]))
    if kind == "truncate":
        return Mutation(kind, at=draw(st.integers(0, size - 1)))
    if kind == "flip":
        flip = st.tuples(st.integers(0, size - 1), st.integers(1, 255))
        return Mutation(kind, flips=tuple(draw(st.lists(flip, min_size=1, max_size=8))))
    if kind == "number":
        digits = draw(st.sampled_from([b"0", b"99999", b"4294967297", b"99999999999999"]))
        return Mutation(kind, at=draw(st.integers(0, 20)), patch=digits)
    limit = size - 1 if kind == "overwrite" else min(511, size - 1)
    patch = draw(st.binary(min_size=1, max_size=16))
    return Mutation(kind, at=draw(st.integers(0, limit)), patch=patch)


@pytest.mark.parametrize("suffix", SUFFIXES)
@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes_read_or_raise_medfleet_errors(
    workdir: Path, suffix: str, data: bytes
) -> None:
    _check_reads_or_refuses(workdir, suffix, data)


@pytest.mark.parametrize("suffix", SUFFIXES)
@FUZZ
@given(choice=st.data())
def test_mutated_files_read_or_raise_medfleet_errors(
    workdir: Path, suffix: str, choice: st.DataObject
) -> None:
    seed = _seeds()[suffix]
    mutation = choice.draw(_mutations(len(seed)), label="mutation")
    _check_reads_or_refuses(workdir, suffix, mutation.apply(seed))


# ----------------------------------------------------------------- the bugs the fuzzing found


def test_nifti_header_declaring_more_voxels_than_the_file_holds_is_refused(tmp_path: Path) -> None:
    import gzip
    import struct

    for name in ("big.nii", "big.nii.gz"):
        path = write_nifti(tmp_path / name, np.zeros((4, 4, 4), np.uint8), (1, 1, 1))
        raw = bytearray(
            gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        )
        raw[42:48] = struct.pack("<hhh", 30000, 30000, 30000)  # dim[1:4]: 27 TB of voxels
        path.write_bytes(gzip.compress(bytes(raw)) if name.endswith(".gz") else bytes(raw))
        with pytest.raises(ImageReadError, match="truncated or its header is corrupt") as info:
            read_image(path)
        assert str(path) in str(info.value)


def test_npy_header_declaring_more_data_than_follows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    np.save(path, np.zeros((4, 4), np.uint8))
    path.write_bytes(path.read_bytes().replace(b"(4, 4)", b"(99999999999, 9999)", 1))
    with pytest.raises(ImageReadError, match="truncated or its header is corrupt"):
        read_image(path)


def test_dicom_element_with_an_unknown_vr_is_an_image_read_error(tmp_path: Path) -> None:
    data = Path(get_testdata_file("MR_small.dcm", download=False)).read_bytes()
    tag = bytes.fromhex("28001000") + b"US"  # (0028,0010) Rows, explicit VR "US"
    assert tag in data
    path = tmp_path / "bad_vr.dcm"
    path.write_bytes(data.replace(tag, tag[:4] + b"TI", 1))
    for reader in (read_image, read_header):
        with pytest.raises(ImageReadError, match=r"bad_vr\.dcm"):
            reader(path)


def test_dicom_rows_with_two_values_is_an_image_read_error(tmp_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    ds.Rows = [64, 64]
    path = tmp_path / "rows.dcm"
    ds.save_as(path)
    for reader in (read_image, read_header):
        with pytest.raises(ImageReadError, match=r"rows\.dcm"):
            reader(path)
