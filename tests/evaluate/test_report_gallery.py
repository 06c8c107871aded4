"""The worst-case gallery of ``report.html``: order, images, bad images, and predict's previews."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.data.io import read_image, write_png
from medfleet.errors import InputFileError, OptionError
from medfleet.evaluate.runner import EvaluationConfig, run_evaluation
from medfleet.evaluate.runner.report import gallery_case_ids
from medfleet.evaluate.runner.segmentation import read_gallery
from medfleet.report.plots import (
    PREDICTION_COLOUR,
    REFERENCE_COLOUR,
    outline_gallery,
    outline_gallery_figure,
)

SHAPE = (32, 32)
#: case id -> Dice of its prediction (names sorted differently from the worst-first order)
DICE = {"case_a": 0.5, "case_b": 1.0, "case_c": 0.0}
WORST_FIRST = ["case_c", "case_a", "case_b"]


def _square(r0: int, c0: int, size: int = 8) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[r0 : r0 + size, c0 : c0 + size] = 1
    return mask


def _folders(root: Path) -> tuple[Path, Path]:
    """Three 2D cases with Dice 0.5, 1 and 0 (8 x 8 squares, shifted or disjoint)."""
    pred_dir, gt_dir = root / "pred", root / "gt"
    gt = _square(8, 8)
    preds = {
        "case_a": _square(8, 12),  # half the square overlaps: Dice 2 * 32 / 128
        "case_b": gt,
        "case_c": _square(20, 20),  # disjoint
    }
    for case_id, pred in preds.items():
        write_png(gt_dir / f"{case_id}.png", gt)
        write_png(pred_dir / f"{case_id}.png", pred)
    return pred_dir, gt_dir


def _gradient(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return (np.arange(int(np.prod(shape))).reshape(shape) % 251).astype(np.uint8)


def _evaluate(root: Path, *extra: object) -> tuple[int, str, str]:
    pred, gt = _folders(root)
    args = ["evaluate", "--task-type", "segmentation", "--pred", pred, "--gt", gt]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--out", root / "out", *extra]])
    return result.exit_code, result.stdout, result.stderr


def _gallery_caption(html: str) -> str:
    start = html.index("Gallery of the")
    return html[start : html.index("</figure>", start)]


def test_the_gallery_shows_the_worst_case_first_without_images(tmp_path: Path) -> None:
    code, _, err = _evaluate(tmp_path)
    assert code == 0, err
    html = (tmp_path / "out" / "report.html").read_text()
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert rows["metrics"]["1"]["dice"]["mean"] == pytest.approx(np.mean(list(DICE.values())))
    assert "Worst cases" in html and "Gallery of the 3 worst cases" in html
    caption = _gallery_caption(html)
    positions = [caption.index(case_id) for case_id in WORST_FIRST]
    assert positions == sorted(positions), caption
    assert "worst first: case_c, case_a, case_b" in caption
    assert "Notes" not in caption  # no --images: no note about images
    assert html.index("<caption>lowest dice</caption>") < html.index("Gallery of the")
    assert "images" not in rows["inputs"]


def test_images_are_drawn_and_a_bad_image_only_loses_its_picture(tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_png(images / "case_a.png", _gradient())
    write_png(images / "case_b.png", _gradient((20, 20)))  # another shape than the masks
    (images / "case_c.png").write_bytes(b"not a png at all")  # unreadable
    code, _, err = _evaluate(tmp_path, "--images", images)
    assert code == 0, err
    html = (tmp_path / "out" / "report.html").read_text()
    caption = _gallery_caption(html)
    assert "worst first: case_c, case_a, case_b" in caption
    assert "case case_c: image unreadable, drawn without it" in caption
    assert "case case_b: image shape (20, 20) differs from the masks (32, 32)" in caption
    assert "case case_a:" not in caption  # its image is drawn
    assert str(images) not in html and "case_c.png" not in html  # no image paths
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["inputs"]["images"] == str(images)


def test_read_gallery_keeps_the_image_of_the_masks_shape(tmp_path: Path) -> None:
    pred, gt = _folders(tmp_path)
    images = tmp_path / "images"
    write_png(images / "case_a.png", _gradient())
    config = EvaluationConfig("segmentation", pred, gt, tmp_path / "out", images=images)
    gallery = read_gallery(config, ["case_a", "case_b"])
    a, b = gallery.cases
    assert a.image is not None and np.array_equal(a.image, _gradient().astype(np.float32))
    assert a.reference.shape == a.prediction.shape == SHAPE and a.note == ""
    assert b.image is None and b.note == "no image file"
    assert gallery.notes == ["case case_b: no image file, drawn without it"]


def test_a_3d_case_shows_its_fullest_slice_and_large_planes_are_downsampled(
    tmp_path: Path,
) -> None:
    gt = np.zeros((5, 600, 300), np.uint8)
    gt[3, 100:200, 50:150] = 1
    gt[1, 10:20, 10:20] = 1
    pred = np.zeros_like(gt)
    pred[3, 120:220, 60:160] = 1
    for folder, array in (("gt", gt), ("pred", pred)):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "vol.npy", array)
    config = EvaluationConfig("segmentation", tmp_path / "pred", tmp_path / "gt", tmp_path / "o")
    (case,) = read_gallery(config, ["vol"]).cases
    assert case.slice_index == 3
    assert case.reference.shape == (512, 256)  # longer side 600 -> 512, nearest neighbour
    assert set(np.unique(case.reference)) == {0, 1}


def test_gallery_case_ids_take_each_case_once_at_its_worst_row() -> None:
    summary = {"task_type": "segmentation", "metrics": {"1": {"dice": {}}, "2": {"dice": {}}}}
    rows = [
        {"case_id": "x", "label": 1, "dice": 0.9},
        {"case_id": "x", "label": 2, "dice": 0.2},
        {"case_id": "y", "label": 1, "dice": 0.5},
        {"case_id": "z", "label": 1, "dice": "nan"},
    ]
    assert gallery_case_ids(summary, rows) == ["x", "y"]
    assert gallery_case_ids(summary, rows, 1) == ["x"]


def _colours(ax) -> list[str]:
    from matplotlib.colors import to_hex

    return [to_hex(c.get_edgecolor()[0]) for c in ax.collections]


def test_the_plot_draws_the_image_under_both_outlines() -> None:
    ref = _square(8, 8)
    pred = _square(12, 12)
    image = _gradient().astype(float)
    fig = outline_gallery_figure(
        [
            {"reference": ref, "prediction": pred, "image": image, "title": "with image"},
            {"reference": ref, "prediction": pred, "title": "without", "note": "no image file"},
        ]
    )
    with_image, without = fig.axes[:2]
    assert len(with_image.images) == 1
    assert np.array_equal(with_image.images[0].get_array(), image)
    assert _colours(with_image) == [REFERENCE_COLOUR.lower(), PREDICTION_COLOUR.lower()]
    assert len(without.images) == 0 and len(without.collections) == 2
    assert without.get_xlabel() == "no image file"
    assert with_image.get_title() == "with image"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["reference", "prediction"]


def test_many_labels_are_outlined_as_their_union_and_big_masks_shrink() -> None:
    ref = np.zeros((1000, 40), np.int64)
    for k in range(1, 9):
        ref[k * 100 : k * 100 + 50, 5:30] = k
    fig = outline_gallery_figure([{"reference": ref, "prediction": ref}], max_labels=6)
    ax = fig.axes[0]
    assert len(ax.collections) == 2  # one union outline each, not 8 + 8
    assert ax.get_ylim()[0] <= 512  # drawn at most 512 pixels high
    few = outline_gallery_figure([{"reference": ref, "prediction": ref}], max_labels=8)
    assert len(few.axes[0].collections) == 16
    png = outline_gallery([{"reference": ref, "prediction": ref, "title": "p"}])
    assert png[1:4] == b"PNG"


def test_a_missing_images_folder_is_refused_naming_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    code, _, err = _evaluate(tmp_path, "--images", missing)
    assert code == 1
    assert "error: --images" in err and str(missing) in err and "fix:" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputFileError, match=r"--images .* does not exist"):
        EvaluationConfig("segmentation", tmp_path, tmp_path, tmp_path / "o", images=missing)
    with pytest.raises(OptionError, match="--images draws the worst-case gallery"):
        EvaluationConfig("regression", tmp_path, tmp_path, tmp_path / "o", images=tmp_path)


def test_no_report_no_gallery_and_zero_gallery_cases(tmp_path: Path) -> None:
    pred, gt = _folders(tmp_path)
    config = EvaluationConfig("segmentation", pred, gt, tmp_path / "out", gallery_cases=0)
    html = run_evaluation(config).report_html.read_text()
    assert "Worst cases" in html and "Gallery of the" not in html


def test_predict_writes_grey_previews_on_the_mask_grid_and_evaluation_uses_them(
    tmp_path: Path,
) -> None:
    torch = pytest.importorskip("torch")
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms
    from medfleet.models import ModelConfig, build_model
    from medfleet.tasks import Manifest
    from medfleet.train.predict import evaluate_predictions, predict_manifest

    task = "organ_lesion_seg"
    path = generate_phantoms(
        tmp_path / "data", PhantomConfig(tasks=[task]), sites=1, cases_per_site=3, size=40
    )
    manifest = Manifest.load(path)
    torch.manual_seed(0)
    model = build_model(manifest, ModelConfig(image_size=32), tasks=[task])
    run = predict_manifest(model, manifest, tmp_path / "pred", split="all", image_size=32)
    task_dir = tmp_path / "pred" / task
    masks = sorted((task_dir / "masks").glob("*.png"))
    previews = sorted((task_dir / "images").glob("*.png"))
    assert [p.name for p in previews] == [m.name for m in masks] and masks
    for mask, preview in zip(masks, previews, strict=True):
        grey = read_image(preview).array
        assert grey.dtype == np.uint8 and grey.shape == read_image(mask).array.shape
        assert grey.min() == 0 and grey.max() == 255  # min-max scaled
    original = read_image(next(manifest.resolve(r["image"]) for r in _rows(manifest, task)))
    first = read_image(previews[0]).array.astype(float)
    source = np.asarray(original.array, dtype=float)
    source = source.mean(axis=-1) if source.ndim == 3 else source
    assert np.corrcoef(first.ravel(), source.ravel())[0, 1] > 0.8  # the same picture
    assert run.tasks[task]["images"] == str(task_dir / "images")
    assert "--images" in run.tasks[task]["evaluate"]
    evaluate_predictions(manifest, run, tmp_path / "eval")
    html = (tmp_path / "eval" / task / "report.html").read_text()
    assert "Notes" not in _gallery_caption(html)  # every case drawn over its preview
    assert str(task_dir / "images") not in html


def _rows(manifest, task: str) -> list[dict[str, str]]:
    """The task's rows in case-id order (the order of the written previews)."""
    from medfleet.train.datasets import load_task_rows

    rows = load_task_rows(manifest, manifest.task(task), ("train", "val", "test"))
    return sorted(rows, key=lambda r: r["case_id"])
