"""Mirror test-time augmentation and single-object post-processing in prediction.

A hand-written model whose outputs depend on the pixel position (not only on the content)
makes the averaged answer of flip TTA known by hand: what it predicts on the mirrored image
must be flipped back before it is averaged with the plain prediction.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medfleet.data.io import read_image, write_png
from medfleet.errors import MedfleetError
from medfleet.tables import write_table
from medfleet.tasks import Manifest, Site, TaskSpec
from medfleet.train.datasets import TaskDataset, load_task_rows
from medfleet.train.predict import (
    iter_predictions,
    parse_postprocess,
    postprocess_mask,
    predict_dataset,
    predict_manifest,
)

SIZE = 8
SEG = TaskSpec(name="seg", type="segmentation", table="seg.csv", labels={0: "bg", 1: "fg"})
CLS = TaskSpec(name="cls", type="classification", table="cls.csv", classes=["a", "b"])
REG = TaskSpec(name="reg", type="regression", table="reg.csv", unit="weeks")


def _fg_columns(columns: list[int], inside: float = 0.9, outside: float = 0.3) -> np.ndarray:
    """Foreground probability ``inside`` on the given columns, ``outside`` elsewhere."""
    fg = np.full((SIZE, SIZE), outside, np.float32)
    fg[:, columns] = inside
    return fg


class PositionModel:
    """A tiny model following the ``UnifiedModel`` interface, with hand-set outputs.

    Segmentation: the foreground probability map ``fg`` whatever the image (so a mirrored
    input gives the same map, which must be flipped back). Classification and regression:
    ``a`` with probability 0.9 and the value 10 when the image's left column is brighter
    than its right column, else ``a`` with 0.3 and 20.
    """

    def __init__(self, fg: np.ndarray | None = None) -> None:
        self.training = True
        self.fg = torch.as_tensor(_fg_columns([0, 1]) if fg is None else fg)
        self.calls: list[torch.Tensor] = []
        self.modes: list[bool] = []

    def eval(self) -> PositionModel:
        self.training = False
        return self

    def train(self, mode: bool = True) -> PositionModel:
        self.training = mode
        return self

    def __call__(self, images: torch.Tensor, task: str) -> dict[str, torch.Tensor]:
        self.calls.append(images.clone())
        self.modes.append(self.training)
        batch = images.shape[0]
        left = images[:, 0, :, 0].mean(dim=1) > images[:, 0, :, -1].mean(dim=1)
        if task == "seg":
            probs = torch.stack([1 - self.fg, self.fg])[None].expand(batch, -1, -1, -1)
            return {"logits": probs.log()}
        if task == "cls":
            p_a = torch.where(left, 0.9, 0.3)
            return {"logits": torch.stack([p_a, 1 - p_a], dim=1).log()}
        return {"value": torch.where(left, 10.0, 20.0)}

    def decode(self, task: str, raw: dict[str, torch.Tensor]) -> list[Any]:
        if task == "seg":
            probs = raw["logits"].softmax(dim=1).numpy()
            return [{"mask": p.argmax(axis=0), "probs": p} for p in probs]
        if task == "cls":
            probs = raw["logits"].softmax(dim=-1).numpy()
            return [{"probs": p, "label": "ab"[int(p.argmax())]} for p in probs]
        return [float(v) for v in raw["value"]]


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    """Two 8x8 images with a bright left column, for a segmentation, a class and a value."""
    image = np.full((SIZE, SIZE), 50, np.uint8)
    image[:, 0] = 200
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, :2] = 1
    rows = []
    for case in ("c1", "c2"):
        write_png(tmp_path / f"{case}.png", image)
        write_png(tmp_path / f"{case}_mask.png", mask, label=True)
        rows.append({"case_id": case, "image": f"{case}.png", "site": "a", "split": "test"})
    write_table(tmp_path / "seg.csv", [{**r, "mask": f"{r['case_id']}_mask.png"} for r in rows])
    write_table(tmp_path / "cls.csv", [{**r, "label": "a"} for r in rows])
    write_table(tmp_path / "reg.csv", [{**r, "value": "12"} for r in rows])
    spec = Manifest(name="t", sites=[Site(name="a")], tasks=[SEG, CLS, REG])
    return Manifest.load(spec.save(tmp_path / "manifest.yaml"))


def _dataset(manifest: Manifest, task: str) -> TaskDataset:
    return TaskDataset(
        manifest, task, ("test",), SIZE, labelled_only=False, normalisation="none", cache=False
    )


# ------------------------------------------------------------------ mirror TTA


def test_flip_tta_runs_the_mirrored_images_and_flips_the_map_back(manifest):
    model = PositionModel()
    preds = predict_dataset(model, _dataset(manifest, "seg"), batch_size=2, tta="flip")
    assert len(model.calls) == 2  # one batch: the images, then their mirror
    assert torch.equal(model.calls[1], model.calls[0].flip(-1))
    # by hand: plain 0.9 on columns 0-1 and 0.3 elsewhere; mirrored and flipped back 0.9 on
    # columns 6-7; the average of the probabilities (not of the logits: that would give
    # 0.66) is 0.6 on columns 0, 1, 6, 7 and 0.3 on the others
    expected = _fg_columns([0, 1, 6, 7], inside=0.6, outside=0.3)
    for p in preds:
        assert p.probs is not None and p.mask is not None
        np.testing.assert_allclose(p.probs[1], expected, atol=1e-6)
        np.testing.assert_allclose(p.probs.sum(axis=0), 1.0, atol=1e-6)
        assert np.array_equal(p.mask, (expected > 0.5).astype(np.int64))
    assert model.modes == [False, False] and model.training  # eval, then restored


def test_without_tta_the_model_runs_once_and_the_output_is_unchanged(manifest):
    model = PositionModel()
    default = predict_dataset(model, _dataset(manifest, "seg"), batch_size=2)
    assert len(model.calls) == 1
    explicit = predict_dataset(model, _dataset(manifest, "seg"), batch_size=2, tta="none")
    assert len(model.calls) == 2
    for a, b in zip(default, explicit, strict=True):
        assert np.array_equal(a.probs, b.probs) and np.array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.probs[1], _fg_columns([0, 1]), atol=1e-6)


def test_flip_tta_averages_class_probabilities_and_values(manifest):
    model = PositionModel()
    plain = predict_dataset(model, _dataset(manifest, "cls"))
    flipped = predict_dataset(model, _dataset(manifest, "cls"), tta="flip")
    # by hand: the image gives a with 0.9, its mirror (bright right column) a with 0.3
    for p, q in zip(plain, flipped, strict=True):
        np.testing.assert_allclose(p.probs, [0.9, 0.1], atol=1e-6)
        np.testing.assert_allclose(q.probs, [0.6, 0.4], atol=1e-6)
        assert p.label == q.label == "a"
    values = [p.value for p in predict_dataset(model, _dataset(manifest, "reg"), tta="flip")]
    assert values == pytest.approx([15.0, 15.0])  # (10 + 20) / 2
    assert [p.value for p in predict_dataset(model, _dataset(manifest, "reg"))] == [10.0, 10.0]


@pytest.mark.parametrize("kind", ["detection", "landmarks"])
def test_flip_tta_is_refused_where_outputs_are_not_mirrored_back(kind):
    spec = TaskSpec(
        name="t", type=kind, table="t.csv", landmarks=["p"] if kind == "landmarks" else None
    )
    stream = iter_predictions(PositionModel(), SimpleNamespace(spec=spec), tta="flip")
    with pytest.raises(MedfleetError, match=r"--tta flip.*fix: use --tta none"):
        next(stream)


def test_unknown_tta_and_steps_name_the_option_and_the_fix(manifest):
    with pytest.raises(MedfleetError, match=r"--tta 'flip2'.*fix:"):
        next(iter_predictions(PositionModel(), _dataset(manifest, "seg"), tta="flip2"))
    with pytest.raises(MedfleetError, match=r"--postprocess \['dilate'\].*fix:"):
        parse_postprocess("largest-component,dilate")
    with pytest.raises(MedfleetError, match=r"--postprocess edits segmentation.*fix:"):
        next(
            iter_predictions(PositionModel(), _dataset(manifest, "cls"), postprocess=["fill-holes"])
        )


# ------------------------------------------------------------------ post-processing


def test_largest_component_and_hole_filling_per_label():
    mask = np.zeros((7, 9), np.int64)
    mask[0:4, 0:4] = 1  # label 1: a 4x4 blob with a hole at (1, 1) ...
    mask[1, 1] = 0
    mask[6, 0:2] = 1  # ... and a 2-pixel blob
    mask[4:7, 5:9] = 2  # label 2: a 3x4 blob with a hole at (5, 6)
    mask[5, 6] = 0
    mask[0, 8] = 2  # ... and one pixel
    mask[3, 4] = 2  # diagonal to (4, 5) only: its own component (face connectivity)
    expected = np.zeros_like(mask)
    expected[0:4, 0:4] = 1  # 15 pixels kept, the hole filled
    expected[4:7, 5:9] = 2  # 11 pixels kept, the hole filled
    out = postprocess_mask(mask, ("largest-component", "fill-holes"))
    assert np.array_equal(out, expected)
    assert mask[1, 1] == 0 and mask[6, 0] == 1  # the input is left as it was
    only_largest = postprocess_mask(mask, ["largest-component"])
    assert only_largest[1, 1] == 0 and only_largest[5, 6] == 0 and only_largest[6, 0] == 0
    only_holes = postprocess_mask(mask, ["fill-holes"])
    assert only_holes[1, 1] == 1 and only_holes[5, 6] == 2 and only_holes[6, 0] == 1


def test_fill_holes_keeps_other_labels_inside_the_hole():
    mask = np.ones((5, 5), np.int64)
    mask[1:4, 1:4] = 0
    mask[2, 2] = 2  # a label-2 object inside label 1's ring
    out = postprocess_mask(mask, ["fill-holes"])
    expected = np.ones_like(mask)
    expected[2, 2] = 2
    assert np.array_equal(out, expected)


def test_postprocess_edits_the_mask_and_keeps_the_probabilities(manifest):
    fg = np.full((SIZE, SIZE), 0.2, np.float32)
    fg[1:6, 1:6] = 0.8  # a ring ...
    fg[3, 3] = 0.2  # ... around a hole
    fg[7, 7] = 0.8  # and a one-pixel speck
    model = PositionModel(fg)
    steps = ["fill-holes", "largest-component"]
    [p, _] = predict_dataset(model, _dataset(manifest, "seg"), batch_size=2, postprocess=steps)
    expected = np.zeros((SIZE, SIZE), np.int64)
    expected[1:6, 1:6] = 1
    assert np.array_equal(p.mask, expected)
    np.testing.assert_allclose(p.probs[1], fg, atol=1e-6)  # as predicted: hole and speck


def test_the_run_records_tta_and_postprocess(manifest, tmp_path):
    model = PositionModel()
    out = tmp_path / "pred"
    run = predict_manifest(
        model, manifest, out, image_size=SIZE, normalisation="none", tta="flip",
        postprocess="largest-component,fill-holes",
    )  # fmt: skip
    summary = json.loads((out / "predictions.json").read_text())
    assert summary == run.to_dict() | {"out": str(out)}
    assert summary["tta"] == "flip"
    assert summary["postprocess"] == ["largest-component", "fill-holes"]
    seg, cls = summary["tasks"]["seg"], summary["tasks"]["cls"]
    assert seg["tta"] == "flip" and seg["postprocess"] == ["largest-component", "fill-holes"]
    assert cls["tta"] == "flip" and cls["postprocess"] == []
    assert cls["notes"] == ["--postprocess not applied: it edits segmentation masks only"]
    # flip TTA gives two equal 8x2 objects (columns 0-1 and 6-7); the largest component
    # on a tie is the first in raster order; the probabilities keep both
    mask = read_image(out / "seg" / "masks" / "c1.png").array
    assert np.array_equal(mask, (_fg_columns([0, 1], 0.6) > 0.5).astype(mask.dtype))
    with np.load(out / "seg" / "probs" / "c1.npz") as probs:
        np.testing.assert_allclose(probs["probs"][1], _fg_columns([0, 1, 6, 7], 0.6), atol=1e-3)
    plain = predict_manifest(model, manifest, tmp_path / "plain", image_size=SIZE)
    assert plain.tta == "none" and plain.postprocess == []
    assert all(t["tta"] == "none" and "notes" not in t for t in plain.tasks.values())


# ------------------------------------------------------------------ real model and CLI


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms
    from medfleet.models import ModelConfig, build_model

    tasks = ["organ_lesion_seg", "lesion_cls", "nodule_det"]
    root = tmp_path_factory.mktemp("tta_phantoms")
    path = generate_phantoms(root, PhantomConfig(tasks=tasks), sites=1, cases_per_site=3, size=32)
    manifest = Manifest.load(path)
    torch.manual_seed(0)
    model_file = build_model(manifest, ModelConfig(image_size=32), tasks=tasks).save(
        root / "model.safetensors"
    )
    folder = tmp_path_factory.mktemp("tta_scans")
    for row in load_task_rows(manifest, "organ_lesion_seg", ("train", "val", "test")):
        source = manifest.resolve(row["image"])
        shutil.copy(source, folder / f"{row['case_id']}{source.suffix}")
    return model_file, folder


@pytest.fixture
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("_restore_torch_threads")
def test_cli_predict_with_tta_and_postprocess(model_and_images, tmp_path):
    from medfleet.cli.app import app

    model_file, folder = model_and_images
    out = tmp_path / "pred"
    result = CliRunner().invoke(app, [
        "predict", "--model", str(model_file), "--images", str(folder), "--out", str(out),
        "--tta", "flip", "--postprocess", "largest-component,fill-holes", "--batch-size", "2",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "nodule_det: --tta flip not applied" in result.output
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["tta"] == "flip"
    assert summary["postprocess"] == ["largest-component", "fill-holes"]
    tasks = summary["tasks"]
    assert tasks["organ_lesion_seg"]["tta"] == "flip" and tasks["lesion_cls"]["tta"] == "flip"
    assert tasks["nodule_det"]["tta"] == "none" and len(tasks["nodule_det"]["notes"]) == 2
    assert tasks["organ_lesion_seg"]["postprocess"] == ["largest-component", "fill-holes"]
    from scipy import ndimage

    for path in (out / "organ_lesion_seg" / "masks").glob("*.png"):
        mask = read_image(path).array
        for value in np.unique(mask[mask != 0]):
            assert ndimage.label(mask == value)[1] == 1  # one object per label
    bad = CliRunner().invoke(app, [
        "predict", "--model", str(model_file), "--images", str(folder), "--out",
        str(tmp_path / "bad"), "--tta", "mirror",
    ])  # fmt: skip
    assert bad.exit_code == 2 and "--tta" in bad.stderr and "fix:" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_flip_tta_and_postprocess_on_volumes(tmp_path):
    from medfleet.data.phantoms import generate_phantoms
    from medfleet.models import ModelConfig, build_model

    tasks = ["organ_lesion_seg3d", "lesion_cls3d", "lesion_volume"]
    path = generate_phantoms(tmp_path / "ph", dim=3, sites=1, cases_per_site=3, size=32, seed=0)
    manifest = Manifest.load(path)
    torch.manual_seed(0)
    model = build_model(manifest, ModelConfig(image_size=32, slices=5), tasks=tasks)
    calls: list[torch.Tensor] = []
    forward = model.forward

    def recording(images: torch.Tensor, task: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(images.clone())
        return forward(images, task, *args, **kwargs)

    model.forward = recording  # type: ignore[method-assign]
    run = predict_manifest(
        model, manifest, tmp_path / "pred", split="all", tasks=tasks, image_size=32,
        tta="flip", postprocess="largest-component,fill-holes",
    )  # fmt: skip
    assert len(calls) == 2 * sum(t["n_cases"] for t in run.tasks.values())
    assert calls[0].ndim == 5 and torch.equal(calls[1], calls[0].flip(-1))  # (B, S, C, H, W)
    assert all(t["tta"] == "flip" for t in run.tasks.values())
    seg = run.tasks["organ_lesion_seg3d"]
    assert seg["postprocess"] == ["largest-component", "fill-holes"]
    for mask_path in Path(seg["masks"]).glob("*.nii.gz"):
        reference = read_image(Path(seg["reference_masks"]) / mask_path.name).array
        assert read_image(mask_path).array.shape == reference.shape
