"""Multi-site, multi-task synthetic data sets ("phantoms") with known truth.

``generate_phantoms`` writes images (PNG in 2D, NIfTI in 3D), label maps, rater
masks, one CSV table per task and a manifest. Every task type is covered
(segmentation with raters, classification, detection, regression, landmarks,
plus an intrapartum biometry task in 2D); sites differ in acquisition (gain,
contrast, speckle, noise, blur, pixel spacing) and subjects carry metadata
(age band, density, sex) with configurable effects on appearance. See
docs/phantoms.md for the truth definitions.

Example:
    >>> import tempfile
    >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
    >>> cfg = PhantomConfig(tasks=["lesion_cls"])
    >>> generate_phantoms(tempfile.mkdtemp(), cfg, sites=2, cases_per_site=3).name
    'manifest.yaml'
"""

from medfleet.data.phantoms.config import PhantomConfig, RaterStyle, SiteProfile, SubgroupEffects
from medfleet.data.phantoms.generate import available_tasks, generate_phantoms

__all__ = [
    "PhantomConfig",
    "RaterStyle",
    "SiteProfile",
    "SubgroupEffects",
    "available_tasks",
    "generate_phantoms",
]
