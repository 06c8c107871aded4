"""What every task generator receives and returns, and the task registry type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfleet.data.phantoms.config import PhantomConfig, SiteProfile
from medfleet.data.phantoms.subgroups import SubjectAttributes, contrast_factor, tissue_background
from medfleet.errors import MedfleetError
from medfleet.tasks import TaskSpec


@dataclass
class CaseContext:
    """Inputs of one case.

    Attributes:
        rng: The case's anatomy generator (pose, placement, per-image variation).
        subject_rng: A fresh generator of the subject's identity (sizes, shapes, class):
            it yields the same numbers for every image of the subject.
        site: The site's acquisition profile.
        attrs: The subject's metadata.
        config: The whole phantom configuration.
        shape: Array shape of the image (rows, cols) or (slices, rows, cols).
        spacing: Spacing in mm per array axis.
        case_id: The case id (for error messages).
    """

    rng: np.random.Generator
    subject_rng: np.random.Generator
    site: SiteProfile
    attrs: SubjectAttributes
    config: PhantomConfig
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    case_id: str

    @property
    def contrast(self) -> float:
        """The subject's structure-contrast multiplier."""
        return contrast_factor(self.attrs, self.config.subgroups)

    def background(self) -> np.ndarray:
        """A fresh textured tissue background for this case."""
        sigma: float | tuple[float, ...] = 2.0
        if len(self.shape) == 3:
            sigma = tuple(2.0 * self.spacing[-1] / s for s in self.spacing)
        return tissue_background(self.shape, self.attrs, self.config.subgroups, self.rng, sigma)

    @property
    def extent_mm(self) -> tuple[float, ...]:
        """Field of view in mm per array axis (pixel centres span ``(n - 1) * spacing``)."""
        return tuple((n - 1) * s for n, s in zip(self.shape, self.spacing, strict=True))

    def fail(self, what: str) -> MedfleetError:
        """An error naming the case, for geometry that cannot be placed."""
        return MedfleetError(
            f"phantom case {self.case_id}: {what} (fix: keep the site's spacing_scale and "
            "slice_scale near 1, or report this as a bug with the seed)"
        )


@dataclass
class CaseOutput:
    """What a task generator returns for one case.

    Attributes:
        clean: Clean image in [0, 1] before acquisition.
        truth: The label map raters are simulated from (segmentation tasks), else None.
        masks: Extra label images to write, ``{column: array}`` (e.g. ``mask``, ``head_mask``).
        fields: Table cells of the case (targets and metadata), in column order.
    """

    clean: np.ndarray
    truth: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PhantomTask:
    """A registered phantom task.

    Attributes:
        spec: The manifest entry (its ``table`` is relative to the data set folder).
        short: Short prefix of case and subject ids.
        fov_mm: Nominal field of view in mm per array axis (pixel spacing is
            ``fov / size * site scale``).
        generate: The case generator.
        raters: Whether rater masks are simulated from ``CaseOutput.truth``.
    """

    spec: TaskSpec
    short: str
    fov_mm: tuple[float, ...]
    generate: Callable[[CaseContext], CaseOutput]
    raters: bool = False

    @property
    def name(self) -> str:
        """The task name."""
        return self.spec.name


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One uniform draw as a Python float."""
    return float(rng.uniform(low, high))


def rounded(value: float, digits: int = 4) -> float:
    """``value`` as a Python float rounded to ``digits`` decimals (for table cells)."""
    return round(float(value), digits)


def place_center(
    ctx: CaseContext,
    radius_mm: float | tuple[float, ...],
    margin_mm: float = 2.0,
    spread: float = 1.0,
) -> tuple[float, ...]:
    """A centre (mm, array axis order) keeping a shape of ``radius_mm`` inside the image.

    Args:
        ctx: The case.
        radius_mm: Bounding radius of the shape (one value, or one per axis).
        margin_mm: Extra distance kept from the image border.
        spread: Fraction of the allowed range actually used (1 = anywhere it fits).

    Raises:
        MedfleetError: When the shape cannot fit.
    """
    radii = radius_mm if isinstance(radius_mm, tuple) else (radius_mm,) * len(ctx.shape)
    center = []
    for extent, r in zip(ctx.extent_mm, radii, strict=True):
        low, high = r + margin_mm, extent - r - margin_mm
        if low > high:
            raise ctx.fail(
                f"a structure of radius {r:.1f} mm does not fit a field of view of {extent:.1f} mm"
            )
        mid, half = (low + high) / 2, (high - low) / 2 * spread
        center.append(uniform(ctx.rng, mid - half, mid + half))
    return tuple(center)


def paint(image: np.ndarray, mask: np.ndarray, contrast: float) -> None:
    """Add ``contrast`` to the pixels of ``mask`` in place (texture continues inside structures)."""
    image[mask] += contrast
