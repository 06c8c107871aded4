"""Task heads, one per task, built from the task's specification."""

from __future__ import annotations

from medfleet.models.backbones import FeatureLayout
from medfleet.models.config import HeadConfig
from medfleet.models.heads.base import TaskHead, TaskOutput
from medfleet.models.heads.classification import ClassificationHead, PooledHead
from medfleet.models.heads.detection import DetectionHead
from medfleet.models.heads.landmarks import LandmarkHead, decode_heatmaps
from medfleet.models.heads.regression import RegressionHead
from medfleet.models.heads.segmentation import SegmentationHead
from medfleet.tasks import TaskSpec, TaskType

__all__ = [
    "ClassificationHead",
    "DetectionHead",
    "LandmarkHead",
    "PooledHead",
    "RegressionHead",
    "SegmentationHead",
    "TaskHead",
    "TaskOutput",
    "build_head",
    "decode_heatmaps",
]


def build_head(
    spec: TaskSpec, layout: FeatureLayout, options: HeadConfig, in_channels: int
) -> TaskHead:
    """The head of a task's type.

    Example:
        >>> spec = TaskSpec(name="c", type="classification", table="c.csv", classes=["a", "b"])
        >>> build_head(spec, FeatureLayout((16,) * 4, (8,) * 4, 16), HeadConfig(), 1).num_classes
        2
    """
    kind = spec.type
    if kind is TaskType.segmentation:
        return SegmentationHead(spec, layout, options, in_channels)
    if kind is TaskType.classification:
        return ClassificationHead(spec, layout, options)
    if kind is TaskType.detection:
        return DetectionHead(spec, layout, options)
    if kind is TaskType.regression:
        return RegressionHead(spec, layout, options)
    if kind is TaskType.landmarks:
        return LandmarkHead(spec, layout, options)
    raise ValueError(f"no head for task type {kind!r}")
