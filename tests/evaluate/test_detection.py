"""Detection metrics: hand-computed cases, and pycocotools as an oracle when installed."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from medfleet.evaluate.metrics import detection as det


def test_box_iou_hand_computed() -> None:
    assert det.box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert det.box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert det.box_iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert det.box_iou((0, 0, 4, 2), (1, 0, 3, 2)) == pytest.approx(0.5)
    assert det.box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # zero-area union
    assert det.pairwise_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_invalid_boxes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"boxes_a\[1\].*x1 < x0"):
        det.pairwise_iou([[0, 0, 1, 1], [5, 0, 4, 1]], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        det.as_boxes([[0, 0, 1]])
    with pytest.raises(ValueError, match="NaN"):
        det.detection_counts([[0, 0, 1, 1]], [[0, 0, 1, 1]], [np.nan])
    with pytest.raises(ValueError, match=r"one .*entry per image"):
        det.average_precision([[]], [[]], [[], []])


def test_average_precision_hand_computed() -> None:
    # 2 GT boxes in one image; predictions by score: TP, FP, TP
    gt = [[[0, 0, 10, 10], [20, 20, 30, 30]]]
    pred = [[[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]]]
    scores = [[0.9, 0.8, 0.7]]
    # precision/recall after each: (1, .5), (.5, .5), (2/3, 1); envelope: 1 up to recall .5,
    # then 2/3 up to recall 1. Recall points 0..0.5 (51 points) read 1, 0.51..1 (50) read 2/3.
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert det.average_precision(pred, scores, gt) == pytest.approx(expected)
    # at IoU 0.95 the third box (IoU 100/110) no longer matches: recall stops at 0.5
    assert det.average_precision(pred, scores, gt, iou_threshold=0.95) == pytest.approx(51 / 101)


def test_average_precision_edge_cases() -> None:
    gt = [[[0, 0, 10, 10]], []]
    assert det.average_precision([[], []], [[], []], gt) == 0.0  # no predictions
    assert np.isnan(det.average_precision([[[0, 0, 1, 1]]], [[0.5]], [[]]))  # no ground truth
    # a false positive in an image without ground truth ranks above the true positive
    pred = [[[0, 0, 10, 10]], [[0, 0, 5, 5]]]
    assert det.average_precision(pred, [[0.5], [0.9]], gt) == pytest.approx(0.5)
    assert det.average_precision(pred, [[0.9], [0.5]], gt) == pytest.approx(1.0)


def test_greedy_matching_by_score_not_by_iou() -> None:
    gt = [[0, 0, 10, 10]]
    pred = [[0, 0, 10, 10], [0, 0, 10, 9]]  # IoU 1.0 and 0.9
    order, matched, iou = det.match_detections(pred, gt, [0.2, 0.8])
    assert order.tolist() == [1, 0]
    assert matched.tolist() == [0, -1]  # the higher score wins the box, even with lower IoU
    assert iou[0] == pytest.approx(0.9)
    c = det.detection_counts(pred, gt, [0.2, 0.8])
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)
    assert c.precision == 0.5 and c.recall == 1.0


def test_detection_rate_and_score_threshold() -> None:
    gt = [[[0, 0, 10, 10], [20, 0, 30, 10]], [[0, 0, 4, 4]]]
    pred = [[[0, 0, 10, 10], [21, 0, 30, 10]], [[2, 2, 6, 6]]]
    scores = [[0.9, 0.3], [0.8]]
    # IoUs 1.0, 0.9, 4/28
    assert det.detection_rate(pred, gt, scores) == pytest.approx(2 / 3)
    assert det.detection_rate(pred, gt, scores, iou_threshold=0.1) == pytest.approx(1.0)
    assert det.detection_rate(pred, gt, scores, score_threshold=0.5) == pytest.approx(1 / 3)
    assert np.isnan(det.detection_rate([[]], [[]]))


def test_coco_map_hand_computed() -> None:
    gt = [[[0, 0, 10, 10]]]
    pred = [[[0, 0, 10, 8]]]  # IoU 0.8: matched at thresholds 0.50..0.80 (7 of 10)
    r = det.coco_map(pred, [[1.0]], gt)
    assert r["ap50"] == 1.0 and r["ap75"] == 1.0
    assert r["map"] == pytest.approx(0.7)
    assert r["ap_per_threshold"]["0.80"] == 1.0 and r["ap_per_threshold"]["0.85"] == 0.0


def _random_scene(rng: np.random.Generator, n_images: int, integer: bool = False):
    gts, preds, scores = [], [], []
    for _ in range(n_images):
        m = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, (m, 2))
        wh = rng.uniform(4, 30, (m, 2))
        g = np.hstack([xy, xy + wh])
        p = []
        for box in g:
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.15, 4) * np.r_[box[2:] - box[:2], box[2:] - box[:2]]
                q = box + jitter
                q[2:] = np.maximum(q[2:], q[:2] + 0.5)
                p.append(q)
        for _ in range(int(rng.integers(0, 3))):
            xy0 = rng.uniform(0, 80, 2)
            p.append(np.r_[xy0, xy0 + rng.uniform(4, 30, 2)])
        p = np.array(p).reshape(-1, 4)
        if integer:  # whole-pixel boxes: many equal IoUs
            g, p = np.round(g), np.round(p)
            g[:, 2:] = np.maximum(g[:, 2:], g[:, :2] + 1)
            p[:, 2:] = np.maximum(p[:, 2:], p[:, :2] + 1)
        s = rng.random(len(p)).round(1)  # rounding makes score ties
        gts.append(g)
        preds.append(p)
        scores.append(s)
    return preds, scores, gts


def _pycocotools_aps(preds, scores, gts, max_dets: int = 100) -> np.ndarray:
    import pycocotools.coco as coco
    import pycocotools.cocoeval as cocoeval

    images = [{"id": i} for i in range(len(gts))]
    anns = []
    for i, g in enumerate(gts):
        for b in g:
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                }
            )
    gt_api = coco.COCO()
    gt_api.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api.createIndex()
        results = [
            {
                "image_id": i,
                "category_id": 1,
                "score": float(sc),
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            }
            for i, (p, s) in enumerate(zip(preds, scores, strict=True))
            for b, sc in zip(p, s, strict=True)
        ]
        dt_api = gt_api.loadRes(results)
        ev = cocoeval.COCOeval(gt_api, dt_api, "bbox")
        ev.params.maxDets = [max_dets]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, 0, 0, 0]  # thresholds x recall points, area "all"
    return np.array([row[row > -1].mean() if (row > -1).any() else np.nan for row in prec])


@pytest.mark.parametrize("seed", range(12))
def test_average_precision_matches_pycocotools(seed: int) -> None:
    rng = np.random.default_rng(seed)
    preds, scores, gts = _random_scene(rng, int(rng.integers(1, 12)), integer=seed % 3 == 1)
    if sum(len(p) for p in preds) == 0 or sum(len(g) for g in gts) == 0:
        preds[0] = np.array([[0.0, 0.0, 5.0, 5.0]])
        scores[0] = np.array([0.5])
        gts[0] = np.array([[0.0, 0.0, 6.0, 5.0]])
    max_dets = 2 if seed % 4 == 0 else 100
    expected = _pycocotools_aps(preds, scores, gts, max_dets)
    got = [
        det.average_precision(preds, scores, gts, iou_threshold=t, max_detections=max_dets)
        for t in det.COCO_IOU_THRESHOLDS
    ]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    r = det.coco_map(preds, scores, gts, max_detections=max_dets)
    assert r["map"] == pytest.approx(expected.mean(), abs=1e-12)
    assert r["ap50"] == pytest.approx(expected[0], abs=1e-12)
    assert r["ap75"] == pytest.approx(expected[5], abs=1e-12)


def test_coco_map_by_class_matches_pycocotools() -> None:
    import pycocotools.coco as coco
    import pycocotools.cocoeval as cocoeval

    rng = np.random.default_rng(7)
    preds, scores, gts = _random_scene(rng, 10)
    pred_cls = [list(rng.choice(["a", "b", "c"], len(p))) for p in preds]
    gt_cls = [list(rng.choice(["a", "b"], len(g))) for g in gts]  # "c" only in predictions
    ids = {"a": 1, "b": 2, "c": 3}
    anns, results = [], []
    for i, (g, gc) in enumerate(zip(gts, gt_cls, strict=True)):
        for b, c in zip(g, gc, strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": ids[c],
                    "iscrowd": 0,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                }
            )
    for i, (p, s, pc) in enumerate(zip(preds, scores, pred_cls, strict=True)):
        for b, sc, c in zip(p, s, pc, strict=True):
            results.append(
                {
                    "image_id": i,
                    "category_id": ids[c],
                    "score": float(sc),
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                }
            )
    gt_api = coco.COCO()
    gt_api.dataset = {
        "images": [{"id": i} for i in range(len(gts))],
        "annotations": anns,
        "categories": [{"id": v} for v in ids.values()],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api.createIndex()
        ev = cocoeval.COCOeval(gt_api, gt_api.loadRes(results), "bbox")
        ev.params.maxDets = [100]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, :, 0, 0]  # thresholds x recall x categories
    expected_map = prec[prec > -1].mean()
    ap50 = prec[0][prec[0] > -1].mean()
    r = det.coco_map_by_class(preds, scores, pred_cls, gts, gt_cls)
    assert r["map"] == pytest.approx(expected_map, abs=1e-12)
    assert r["ap50"] == pytest.approx(ap50, abs=1e-12)
    assert np.isnan(r["per_class"]["c"]["map"])
