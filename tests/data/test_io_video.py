"""Video frames and clips through PyAV, on small clips written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import medfleet.data.io.video as video_module
from medfleet.data.io import read_header, read_image
from medfleet.errors import ImageReadError

N_FRAMES, HEIGHT, WIDTH, FPS = 24, 32, 48, 12


def _level(i: int) -> int:
    return 9 * i + 5  # frame-dependent intensity, distinct for every frame


def _grey_frame(i: int) -> np.ndarray:
    frame = np.full((HEIGHT, WIDTH), _level(i), np.uint8)
    frame[: HEIGHT // 2, : WIDTH // 2] = 255 - _level(i)  # a structure, so orientation is checked
    return frame


def _write(path: Path, codec: str, pix_fmt: str, *, colour: bool = False, gop: int = 5) -> Path:
    if codec not in av.codecs_available:
        pytest.skip(f"codec {codec} not available in this PyAV build")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        stream.codec_context.gop_size = gop
        for i in range(N_FRAMES):
            grey = _grey_frame(i)
            if colour:
                rgb = np.stack([grey, np.full_like(grey, 60), 255 - grey], axis=-1)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            else:
                frame = av.VideoFrame.from_ndarray(grey, format="gray")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def lossless(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("video")
    return {
        "avi": _write(folder / "clip.avi", "ffv1", "gray"),
        "mkv": _write(folder / "clip.MKV", "ffv1", "gray"),
    }


@pytest.fixture(scope="module")
def lossy_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("video") / "clip.mp4", "libx264", "yuv420p", colour=True)


@pytest.mark.parametrize("kind", ["avi", "mkv"])
def test_frame_n_returns_frame_n_exactly(lossless: dict[str, Path], kind: str) -> None:
    path = lossless[kind]
    for i in (0, 1, 4, 5, 6, 13, N_FRAMES - 1):
        image = read_image(f"{path}#frame={i}")
        assert image.array.shape == (HEIGHT, WIDTH)
        assert image.array.dtype == np.uint8
        np.testing.assert_array_equal(image.array, _grey_frame(i))
        assert image.spacing == (1.0, 1.0)
        assert image.meta["frame"] == i
        assert image.meta["n_frames"] == N_FRAMES
        assert image.meta["channel_axis"] is None
        assert image.meta["format"] == "video"


@pytest.mark.parametrize("kind", ["avi", "mkv"])
def test_whole_clip(lossless: dict[str, Path], kind: str) -> None:
    clip = read_image(lossless[kind])
    assert clip.array.shape == (N_FRAMES, HEIGHT, WIDTH)
    np.testing.assert_array_equal(clip.array, np.stack([_grey_frame(i) for i in range(N_FRAMES)]))
    assert clip.meta["n_frames"] == N_FRAMES
    assert clip.meta["fps"] == pytest.approx(FPS)
    assert clip.spacing == (1.0, 1.0, 1.0)
    assert clip.meta["time_axis"] == 0
    assert read_header(lossless[kind]) == ((N_FRAMES, HEIGHT, WIDTH), (1.0, 1.0, 1.0))
    assert read_header(f"{lossless[kind]}#frame=3") == ((HEIGHT, WIDTH), (1.0, 1.0))


def test_single_frame_is_found_by_seeking_not_by_decoding_everything(
    lossless: dict[str, Path], lossy_mp4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    original = video_module._pixels

    def counting(frame: av.VideoFrame, grey: str | None) -> np.ndarray:
        decoded.append(1)
        return original(frame, grey)

    def no_linear(*args: object, **kwargs: object) -> None:
        raise AssertionError("fell back to decoding from the start")

    monkeypatch.setattr(video_module, "_decode_linear", no_linear)
    monkeypatch.setattr(video_module, "_pixels", counting)
    for path in lossless.values():
        np.testing.assert_array_equal(read_image(f"{path}#frame=21").array, _grey_frame(21))
    red = read_image(f"{lossy_mp4}#frame=21").array[..., 0].astype(float)
    assert abs(red.mean() - _grey_frame(21).mean()) < 4
    assert len(decoded) == 3  # one conversion per request


def test_fallback_without_timestamps_gives_the_same_frames(
    lossless: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(video_module, "_timestamps", lambda path: None)
    path = lossless["avi"]
    for i in (0, 7, N_FRAMES - 1):
        image = read_image(f"{path}#frame={i}")
        np.testing.assert_array_equal(image.array, _grey_frame(i))
        assert image.meta["n_frames"] == N_FRAMES  # from the AVI header, not the frames decoded
    with pytest.raises(ImageReadError, match=rf"clip\.avi: frame {N_FRAMES} is out of range"):
        read_image(f"{path}#frame={N_FRAMES}")


def test_colour_lossy_mp4_frames_and_clip(lossy_mp4: Path) -> None:
    clip = read_image(lossy_mp4)
    assert clip.array.shape == (N_FRAMES, HEIGHT, WIDTH, 3)
    assert clip.meta["channel_axis"] == -1
    assert clip.ndim_spatial == 3
    for i in (0, 9, 17, N_FRAMES - 1):
        frame = read_image(f"{lossy_mp4}#frame={i}")
        assert frame.array.shape == (HEIGHT, WIDTH, 3)
        assert frame.meta["channel_axis"] == -1
        expected = _grey_frame(i).astype(float)
        # lossy codec and chroma subsampling: compare means of flat regions
        red = frame.array[HEIGHT // 2 + 2 :, WIDTH // 2 + 2 :, 0].astype(float).mean()
        assert abs(red - expected[-1, -1]) < 6, (i, red)
        np.testing.assert_array_equal(frame.array, clip.array[i])


@pytest.mark.parametrize("frame", [N_FRAMES, N_FRAMES + 100])
def test_out_of_range_frame_names_file_frame_and_count(
    lossless: dict[str, Path], frame: int
) -> None:
    with pytest.raises(ImageReadError) as info:
        read_image(f"{lossless['mkv']}#frame={frame}")
    message = str(info.value)
    assert "clip.MKV" in message
    assert f"frame {frame}" in message
    assert f"{N_FRAMES} frames" in message
    with pytest.raises(ImageReadError, match=f"frame {frame} is out of range"):
        read_header(f"{lossless['mkv']}#frame={frame}")


def test_bad_frame_option(lossless: dict[str, Path]) -> None:
    with pytest.raises(ImageReadError, match="not a non-negative integer"):
        read_image(f"{lossless['avi']}#frame=two")
    with pytest.raises(ImageReadError, match="'index' is not supported for video"):
        read_image(f"{lossless['avi']}#index=2")


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_video_raises_image_read_error(
    lossy_mp4: Path, tmp_path: Path, keep: float
) -> None:
    data = lossy_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageReadError, match=r"cut\.mp4"):
        read_image(f"{cut}#frame=2")
    with pytest.raises(ImageReadError, match=r"cut\.mp4"):
        read_image(cut)


def test_truncated_avi_clip_is_detected(lossless: dict[str, Path], tmp_path: Path) -> None:
    data = lossless["avi"].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.9)])  # loses the last frames and the index
    with pytest.raises(ImageReadError, match=r"cut\.avi: the header declares 24 frames but"):
        read_image(cut)
    with pytest.raises(ImageReadError, match=r"cut\.avi: frame 23 is out of range"):
        read_image(f"{cut}#frame=23")
    np.testing.assert_array_equal(read_image(f"{cut}#frame=1").array, _grey_frame(1))


def test_garbage_video_raises(tmp_path: Path) -> None:
    path = tmp_path / "noise.avi"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match=r"noise\.avi"):
        read_image(path)
    with pytest.raises(ImageReadError, match=r"noise\.avi"):
        read_header(path)
