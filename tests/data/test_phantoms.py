"""Phantoms: determinism, manifest and tables, splits, and that the known truth holds.

Every truth check recomputes the quantity independently from the saved files
(masks, spacing column) with code that does not share the generator's helpers.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.special import ellipe

from medfleet.data.io import read_image
from medfleet.data.phantoms import PhantomConfig, available_tasks, generate_phantoms
from medfleet.errors import MedfleetError
from medfleet.tables import (
    SPLITS,
    parse_boxes,
    parse_landmarks,
    parse_spacing,
    rater_column,
    read_table,
)
from medfleet.tasks import Manifest, TaskType


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load(manifest: Manifest, task: str) -> list[dict[str, str]]:
    return read_table(manifest.table_path(task))


def array(manifest: Manifest, ref: str) -> np.ndarray:
    return np.asarray(read_image(manifest.resolve(ref)).array)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def set2d(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("phantoms2d")
    return Manifest.load(generate_phantoms(out, sites=3, cases_per_site=12, seed=3))


@pytest.fixture(scope="module")
def set3d(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("phantoms3d")
    return Manifest.load(generate_phantoms(out, sites=3, cases_per_site=6, dim=3, seed=5))


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_trees_and_another_seed_differs(tmp_path: Path) -> None:
    for dim, size in ((2, 48), (3, 32)):
        a = generate_phantoms(
            tmp_path / f"a{dim}", sites=2, cases_per_site=2, dim=dim, seed=11, size=size
        )
        b = generate_phantoms(
            tmp_path / f"b{dim}", sites=2, cases_per_site=2, dim=dim, seed=11, size=size
        )
        c = generate_phantoms(
            tmp_path / f"c{dim}", sites=2, cases_per_site=2, dim=dim, seed=12, size=size
        )
        assert tree_digest(a.parent) == tree_digest(b.parent)
        assert tree_digest(a.parent) != tree_digest(c.parent)
        # Not only the manifest: the images themselves change with the seed.
        first = sorted((a.parent / available_tasks(dim)[0] / "images").iterdir())[0].name
        image_a = (a.parent / available_tasks(dim)[0] / "images" / first).read_bytes()
        image_c = (c.parent / available_tasks(dim)[0] / "images" / first).read_bytes()
        assert image_a != image_c


def test_files_do_not_depend_on_which_tasks_or_how_many_sites_are_generated(tmp_path: Path) -> None:
    full = generate_phantoms(tmp_path / "full", sites=3, cases_per_site=3, seed=2, size=48).parent
    subset = generate_phantoms(
        tmp_path / "subset",
        PhantomConfig(tasks=["head_circumference"]),
        sites=2,
        cases_per_site=3,
        seed=2,
        size=48,
    ).parent
    files = sorted(
        p.relative_to(subset) for p in (subset / "head_circumference").rglob("*") if p.is_file()
    )
    assert len(files) == 2 * 3 * 2  # two sites, three cases, image + head mask
    for rel in files:
        assert (full / rel).read_bytes() == (subset / rel).read_bytes(), rel
    full_rows = [r for r in read_table(full / "head_circumference.csv") if r["site"] != "site_c"]
    assert full_rows == read_table(subset / "head_circumference.csv")


def test_progress_counts_every_case(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_phantoms(
        tmp_path, sites=2, cases_per_site=2, size=32, progress=lambda d, t: calls.append((d, t))
    )
    total = 2 * 2 * len(available_tasks(2))
    assert calls == [(done, total) for done in range(total + 1)]


# ----------------------------------------------------------------------------- manifest and tables


def test_manifest_declares_every_task_type_sites_and_config(set2d: Manifest) -> None:
    assert {t.type for t in set2d.tasks} == set(TaskType)
    assert [t.name for t in set2d.tasks] == available_tasks(2)
    assert set2d.site_names == ["site_a", "site_b", "site_c"]
    site_b = set2d.sites[1].model_dump()
    assert (
        site_b["vendor"] == "Borealis" and site_b["gain"] == 1.2 and site_b["spacing_scale"] == 1.15
    )
    assert set2d.task("organ_lesion_seg").raters == 3
    assert set2d.task("intrapartum_seg").raters == 3
    assert set2d.task("head_circumference").unit == "mm"
    assert set2d.metadata["seed"] == 3 and set2d.metadata["dim"] == 2
    assert PhantomConfig.model_validate(set2d.metadata["config"]).sites[1].gain == 1.2


def test_tables_have_base_columns_metadata_and_consistent_spacing(set2d: Manifest) -> None:
    for spec in set2d.tasks:
        rows = load(set2d, spec.name)
        assert len(rows) == 3 * 12
        assert list(rows[0])[:5] == ["case_id", "image", "site", "split", "subject"]
        assert len({r["case_id"] for r in rows}) == len(rows)
        for row in rows:
            assert row["site"] in set2d.site_names
            assert row["age_band"] in ("18-39", "40-59", "60+")
            assert row["density"] in ("A", "B", "C", "D")
            assert row["vendor"] == set2d.sites[set2d.site_names.index(row["site"])].vendor
            spacing = parse_spacing(row["spacing"], 2)
            assert (
                list(spacing)
                == set2d.sites[set2d.site_names.index(row["site"])].model_dump()["spacing_mm"][
                    spec.name
                ]
            )
            assert array(set2d, row["image"]).shape == (128, 128)


def test_splits_are_subject_wise_with_repeated_subjects(set2d: Manifest) -> None:
    repeated = 0
    for spec in set2d.tasks:
        rows = load(set2d, spec.name)
        split_of: dict[str, str] = {}
        for row in rows:
            assert row["split"] in SPLITS
            assert split_of.setdefault(row["subject"], row["split"]) == row["split"], row["subject"]
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["subject"]] = counts.get(row["subject"], 0) + 1
        repeated += sum(1 for c in counts.values() if c > 1)
        for site in set2d.site_names:
            n = {s: sum(1 for r in rows if r["site"] == site and r["split"] == s) for s in SPLITS}
            assert 5 <= n["train"] <= 9 and 1 <= n["val"] <= 4 and 1 <= n["test"] <= 4, (
                spec.name,
                site,
                n,
            )
    assert repeated >= 10


def test_subject_metadata_and_class_are_shared_by_all_images_of_a_subject(set2d: Manifest) -> None:
    rows = load(set2d, "lesion_cls")
    seen: dict[str, tuple[str, ...]] = {}
    for row in rows:
        key = (row["label"], row["age_band"], row["density"], row["sex"])
        assert seen.setdefault(row["subject"], key) == key


def test_every_mask_label_is_in_the_label_map(set2d: Manifest, set3d: Manifest) -> None:
    for manifest in (set2d, set3d):
        for spec in manifest.tasks:
            if spec.type is not TaskType.segmentation:
                continue
            for row in load(manifest, spec.name):
                for column in ["mask"] + [rater_column(k) for k in range(1, spec.raters + 1)]:
                    values = set(np.unique(array(manifest, row[column])).tolist())
                    assert values <= set(spec.labels or {}), (
                        spec.name,
                        row["case_id"],
                        column,
                        values,
                    )
                    assert values == {0, 1, 2}


def test_generated_sets_pass_manifest_validation(set2d: Manifest, set3d: Manifest) -> None:
    from medfleet.data.validate import validate_manifest

    for manifest in (set2d, set3d):
        report = validate_manifest(manifest.root / "manifest.yaml")
        assert report.ok, [str(p) for p in report.errors]


# ----------------------------------------------------------------------------- known truth, 2D


def test_detection_boxes_are_the_tight_pixel_edge_boxes_of_each_blob(set2d: Manifest) -> None:
    for row in load(set2d, "nodule_det"):
        instances = array(set2d, row["instance_mask"])
        boxes = parse_boxes(row["boxes"])
        assert len(boxes) == int(row["n_objects"]) == int(instances.max())
        for k, box in enumerate(boxes, start=1):
            rows_, cols = np.nonzero(instances == k)
            # box edges on pixel borders (medfleet.tables): x1 = last column + 1
            assert box.coords == (cols.min(), rows_.min(), cols.max() + 1, rows_.max() + 1)
            assert box.label in ("cyst", "nodule")
        # Blobs never touch, so each box's blob is one connected component.
        assert ndimage.label(instances > 0)[1] == len(boxes)


def test_detection_blob_brightness_matches_its_class(set2d: Manifest) -> None:
    for row in load(set2d, "nodule_det"):
        image = array(set2d, row["image"]).astype(float)
        instances = array(set2d, row["instance_mask"])
        background = image[instances == 0].mean()
        for k, box in enumerate(parse_boxes(row["boxes"]), start=1):
            inside = image[instances == k].mean()
            assert (inside > background) == (box.label == "nodule"), row["case_id"]


def test_head_circumference_matches_the_saved_mask(set2d: Manifest) -> None:
    for row in load(set2d, "head_circumference"):
        mask = array(set2d, row["head_mask"]) > 0
        spacing = parse_spacing(row["spacing"])[0]
        ys, xs = np.nonzero(mask)
        # Moments of a filled ellipse: variance along an axis = semi-axis**2 / 4 (+1/12 per pixel).
        eig = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]), bias=True))
        a, b = (2 * math.sqrt(v - 1 / 12) * spacing for v in eig[::-1])
        exact = 4 * a * ellipe(1 - (b / a) ** 2)  # complete elliptic integral: the exact perimeter
        assert exact == pytest.approx(float(row["value"]), rel=0.01), row["case_id"]
        assert float(row["semi_major_mm"]) == pytest.approx(a, rel=0.02)


def test_spine_landmarks_are_corners_of_the_structure(set2d: Manifest) -> None:
    names = set2d.task("spine_landmarks").landmarks
    assert names == [
        "superior_anterior",
        "superior_posterior",
        "inferior_posterior",
        "inferior_anterior",
    ]
    for row in load(set2d, "spine_landmarks"):
        mask = array(set2d, row["structure_mask"]) > 0
        points = parse_landmarks(row["landmarks"], n_points=4)
        ys, xs = np.nonzero(mask)
        yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
        for x, y in points:
            assert np.min(np.hypot(xs - x, ys - y)) <= 1.5
            # Around a corner about a quarter of a small disc is inside (an edge: half).
            assert mask[np.hypot(xx - x, yy - y) <= 4].mean() < 0.4
        # Named by position: anterior corners left of posterior ones, superior above inferior.
        sa, sp, ip, ia = points
        assert sa[0] < sp[0] and ia[0] < ip[0] and sa[1] < ia[1] and sp[1] < ip[1]


def test_classification_label_is_visible_in_the_lesion_outline(set2d: Manifest) -> None:
    from scipy.spatial import ConvexHull

    solidity: dict[str, list[float]] = {"benign": [], "malignant": []}
    for row in load(set2d, "lesion_cls"):
        lesion = array(set2d, row["lesion_mask"]) > 0
        if row["label"] == "normal":
            assert not lesion.any()
            continue
        image = array(set2d, row["image"]).astype(float)
        assert image[lesion].mean() < image[~lesion].mean() - 5  # darker lesion, visible
        ys, xs = np.nonzero(lesion)
        hull = ConvexHull(np.stack([xs, ys], axis=1))
        solidity[row["label"]].append(lesion.sum() / hull.volume)
    assert solidity["benign"] and solidity["malignant"]
    # Spiculated outlines fill much less of their convex hull than smooth ovals.
    assert max(solidity["malignant"]) < min(solidity["benign"])


def test_rater_masks_differ_from_truth_but_overlap_strongly(set2d: Manifest) -> None:
    # task: (large label, its Dice floor, small label, its Dice floor) -- see docs/phantoms.md
    floors = {"organ_lesion_seg": (1, 0.88, 2, 0.25), "intrapartum_seg": (2, 0.94, 1, 0.70)}
    for task, (big, big_floor, small, small_floor) in floors.items():
        small_dice, areas = [], {k: [] for k in (1, 2, 3)}
        for row in load(set2d, task):
            truth = array(set2d, row["mask"])
            for k in (1, 2, 3):
                rater = array(set2d, row[rater_column(k)])
                assert not np.array_equal(rater, truth)
                assert big_floor <= dice(truth == big, rater == big) < 1.0, (
                    task,
                    row["case_id"],
                    k,
                )
                d = dice(truth == small, rater == small)
                assert d >= small_floor, (task, row["case_id"], k, d)
                small_dice.append(d)
                areas[k].append(int((rater == big).sum()) / int((truth == big).sum()))
        assert np.mean(small_dice) >= 0.8
        # Rater 1 draws systematically larger, rater 3 smaller (documented biases +0.8 / -0.5 px).
        assert np.mean(areas[1]) > 1.01 and np.mean(areas[3]) < 0.995
        assert np.mean(areas[1]) > np.mean(areas[2]) > np.mean(areas[3])


def _fit_symphysis(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero(mask)
    centre = np.array([xs.mean(), ys.mean()])
    values, vectors = np.linalg.eigh(np.cov(np.stack([xs, ys]), bias=True))
    half = 2 * math.sqrt(values[1] - 1 / 12)
    return centre + half * vectors[:, 1], centre - half * vectors[:, 1]


def test_angle_of_progression_and_hsd_recomputed_from_the_mask(set2d: Manifest) -> None:
    errors_aop, errors_hsd = [], []
    for row in load(set2d, "intrapartum_seg"):
        mask = array(set2d, row["mask"])
        spacing = parse_spacing(row["spacing"])[0]
        end1, end2 = _fit_symphysis(mask == 1)
        hy, hx = np.nonzero(mask == 2)
        head = np.stack([hx, hy], axis=1).astype(float)
        near1 = np.min(np.hypot(*(head - end1).T))
        near2 = np.min(np.hypot(*(head - end2).T))
        inferior, superior = (end1, end2) if near1 < near2 else (end2, end1)
        axis = superior - inferior
        rays = head - inferior
        angles = np.degrees(
            np.arctan2(np.abs(axis[0] * rays[:, 1] - axis[1] * rays[:, 0]), rays @ axis)
        )
        errors_aop.append(angles.max() - float(row["aop_deg"]))
        # HSD: march along the perpendicular to the axis at I (towards the head) to the head.
        normal = np.array([-axis[1], axis[0]]) / np.linalg.norm(axis)
        if normal @ (head.mean(axis=0) - inferior) < 0:
            normal = -normal
        steps = np.arange(0.0, 300.0, 0.05)
        points = np.rint(inferior[None, :] + steps[:, None] * normal[None, :]).astype(int)
        inside = (
            (points >= 0).all(axis=1)
            & (points[:, 0] < mask.shape[1])
            & (points[:, 1] < mask.shape[0])
        )
        rows_, cols = (
            points[:, 1].clip(0, mask.shape[0] - 1),
            points[:, 0].clip(0, mask.shape[1] - 1),
        )
        hits = np.nonzero(inside & (mask[rows_, cols] == 2))[0]
        errors_hsd.append((steps[hits[0]] * spacing - float(row["hsd_mm"])) / spacing)
        points_cell = parse_landmarks(row["biometry_points"], n_points=4)
        assert (
            np.linalg.norm(points_cell[1] - inferior) < 1.0
        )  # the fitted I matches the stored one
    assert np.max(np.abs(errors_aop)) < 2.5
    assert np.mean(np.abs(errors_aop)) < 0.8
    assert np.max(np.abs(errors_hsd)) < 1.0  # pixels


def test_intrapartum_values_cover_a_clinical_range(set2d: Manifest) -> None:
    rows = load(set2d, "intrapartum_seg")
    aop = [float(r["aop_deg"]) for r in rows]
    hsd = [float(r["hsd_mm"]) for r in rows]
    assert min(aop) >= 100 and max(aop) <= 165 and max(aop) - min(aop) > 25
    assert min(hsd) >= 3 and max(hsd) <= 40 and max(hsd) - min(hsd) > 10


# ----------------------------------------------------------------------------- known truth, 3D


def test_volumes_are_anisotropic_nifti_with_slice_axis_first(set3d: Manifest) -> None:
    assert {t.type for t in set3d.tasks} == set(TaskType)
    for spec in set3d.tasks:
        assert spec.dim == 3
        for row in load(set3d, spec.name)[:3]:
            image = read_image(set3d.resolve(row["image"]))
            assert row["image"].endswith(".nii.gz")
            assert image.array.shape == (24, 64, 64)
            assert tuple(image.spacing) == pytest.approx(parse_spacing(row["spacing"], 3))
            assert image.spacing[0] > 2 * image.spacing[1]


def test_3d_boxes_volume_and_landmarks_hold(set3d: Manifest) -> None:
    for row in load(set3d, "nodule_det3d"):
        instances = array(set3d, row["instance_mask"])
        for k, box in enumerate(parse_boxes(row["boxes"], ndim=3), start=1):
            zs, ys, xs = np.nonzero(instances == k)
            lower = (xs.min(), ys.min(), zs.min())
            upper = (xs.max() + 1, ys.max() + 1, zs.max() + 1)
            assert box.coords == lower + upper
    for row in load(set3d, "lesion_volume"):
        mask = array(set3d, row["lesion_mask"]) > 0
        voxel_ml = float(np.prod(parse_spacing(row["spacing"], 3))) / 1000.0
        assert mask.sum() * voxel_ml == pytest.approx(float(row["value"]), rel=0.08)
        a, b, c = (float(v) for v in row["semi_axes_mm"].split(","))
        assert float(row["value"]) == pytest.approx(4 / 3 * math.pi * a * b * c / 1000, rel=1e-4)
    for row in load(set3d, "tetra_landmarks"):
        structure = array(set3d, row["structure_mask"])
        spacing = np.array(parse_spacing(row["spacing"], 3))
        balls, n = ndimage.label(structure == 2)
        assert n == 4
        points = parse_landmarks(row["landmarks"], n_points=4, ndim=3)
        for x, y, z in points:
            ball = balls[round(z), round(y), round(x)]
            assert ball > 0
            centre = np.array(ndimage.center_of_mass(balls == ball))
            assert np.linalg.norm((centre - (z, y, x)) * spacing) <= 0.5 * spacing.max()
        assert points[0][2] > points[1:, 2].max()  # apex towards higher slices


def test_3d_raters_overlap_the_truth(set3d: Manifest) -> None:
    lesion_dice = []
    for row in load(set3d, "organ_lesion_seg3d"):
        truth = array(set3d, row["mask"])
        for k in (1, 2, 3):
            rater = array(set3d, row[rater_column(k)])
            assert 0.75 <= dice(truth == 1, rater == 1) < 1.0
            lesion_dice.append(dice(truth == 2, rater == 2))
    assert min(lesion_dice) >= 0.3 and np.mean(lesion_dice) >= 0.75


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 4}, "dim must be 2 or 3"),
        ({"cases_per_site": 0}, "cases_per_site must be at least 1"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"size": 8}, "size must be at least 32"),
        ({"sites": 0}, "sites must be at least 1"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(MedfleetError, match=message):
        generate_phantoms(tmp_path, **kwargs)


def test_unknown_or_2d_only_task_names_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(
        MedfleetError, match=r"unknown phantom task\(s\) \['intrapartum_seg'\] for dim=3"
    ):
        generate_phantoms(tmp_path, PhantomConfig(tasks=["intrapartum_seg"]), dim=3)
    with pytest.raises(MedfleetError, match="'tasks' is empty"):
        generate_phantoms(tmp_path, PhantomConfig(tasks=[]))
