"""Adapters that turn public medical imaging data sets into medfleet manifests and task tables.

Each adapter reads one data set as downloaded, references its images by
absolute path (nothing big is copied), writes only derived files (filled or
thresholded masks) and the task tables plus ``manifest.yaml`` into the output
folder, and splits by subject, deterministically for a given seed.

=================  ===================================================================
name               tasks written
=================  ===================================================================
``hc18``           ``hc18_seg`` (head mask), ``hc18_hc`` (head circumference, mm)
``busi``           ``busi_cls`` (benign / malignant / normal), ``busi_seg`` if masked
``pneumoniamnist`` ``pneumoniamnist_cls`` (normal / pneumonia)
``kvasir_seg``     ``kvasir_polyp_seg`` (polyp mask), ``kvasir_polyp_det`` (boxes)
=================  ===================================================================

See docs/datasets.md for each adapter's input, split rule and quirks.

:func:`merge_manifests` joins prepared manifests into one (one site per data set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medfleet.data.catalog import busi, hc18, kvasir_seg, pneumoniamnist
from medfleet.data.catalog.common import MANIFEST_NAME, PrepareOptions, ProgressCallback
from medfleet.data.catalog.merge import merge_manifests
from medfleet.errors import MedfleetError

__all__ = [
    "ADAPTERS",
    "MANIFEST_NAME",
    "Adapter",
    "PrepareOptions",
    "merge_manifests",
    "prepare_dataset",
]


@dataclass(frozen=True)
class Adapter:
    """A registered data set adapter.

    Attributes:
        name: Name used on the command line.
        summary: One line on the data set and the tasks written.
        expects: What the source folder must contain.
        prepare: ``prepare(src, out, options) -> manifest path``.
    """

    name: str
    summary: str
    expects: str
    prepare: Callable[[Path, Path, PrepareOptions], Path]


ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        Adapter(
            hc18.NAME,
            "HC18 fetal head ultrasound: head mask + head circumference (mm), split by subject",
            hc18.EXPECTED,
            hc18.prepare,
        ),
        Adapter(
            busi.NAME,
            "BUSI breast ultrasound: benign / malignant / normal, stratified split",
            busi.EXPECTED,
            busi.prepare,
        ),
        Adapter(
            pneumoniamnist.NAME,
            "PneumoniaMNIST chest X-ray: normal / pneumonia, the npz's own split",
            pneumoniamnist.EXPECTED,
            pneumoniamnist.prepare,
        ),
        Adapter(
            kvasir_seg.NAME,
            "Kvasir-SEG colonoscopy: polyp masks and boxes",
            kvasir_seg.EXPECTED,
            kvasir_seg.prepare,
        ),
    )
}
"""Registered adapters by name."""


def prepare_dataset(
    name: str,
    src: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    progress: ProgressCallback | None = None,
    limit: int | None = None,
    test_only: bool = False,
) -> Path:
    """Convert the public data set ``name`` in ``src`` into a manifest and tables in ``out``.

    Args:
        name: One of :data:`ADAPTERS` (``hc18``, ``busi``, ``pneumoniamnist``, ``kvasir_seg``).
        src: The data set's folder as downloaded.
        out: Output folder (created); must not be inside ``src``.
        seed: Seed of the split (same inputs and seed give identical files).
        val_fraction: Target share of images in ``val``.
        test_fraction: Target share of images in ``test``.
        progress: ``progress(done, total)`` callback.
        limit: Use only the first N cases (deterministic; stratified sets keep their
            class proportions).
        test_only: Put every row in ``test``: an external set a trained model is scored on
            (``medfleet predict --split test``), never trained on.

    Returns:
        Path of the written ``manifest.yaml``.

    Raises:
        MedfleetError: For an unknown name (listing the known ones), bad fractions, or a
            source folder without the expected files (a ``ManifestError`` naming the file).

    Example:
        >>> import tempfile
        >>> try:
        ...     prepare_dataset("nope", tempfile.mkdtemp(), tempfile.mkdtemp())
        ... except Exception as exc:
        ...     print(exc)
        unknown data set 'nope'; known: busi, hc18, kvasir_seg, pneumoniamnist
    """
    adapter = ADAPTERS.get(name)
    if adapter is None:
        raise MedfleetError(f"unknown data set {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    options = PrepareOptions(
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        progress=progress,
        limit=limit,
    )
    manifest = adapter.prepare(Path(src), Path(out), options)
    if test_only:
        mark_test_only(manifest)
    return manifest


def mark_test_only(manifest_path: str | Path) -> Path:
    r"""Move every row of a manifest's tables to the ``test`` split (tables rewritten atomically).

    The manifest's ``metadata.split`` records it, so the set reads as an external test set.

    Example:
        >>> import tempfile, pathlib
        >>> from medfleet.tasks import Manifest, Site, TaskSpec
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "c.csv").write_text("case_id,image,site,split,label\na,a.png,s,train,x\n")
        >>> m = Manifest(name="m", sites=[Site(name="s")],
        ...              tasks=[TaskSpec(name="c", type="classification", table="c.csv",
        ...                              classes=["x", "y"])])
        >>> path = m.save(d / "manifest.yaml")
        >>> _ = mark_test_only(path)
        >>> (d / "c.csv").read_text().splitlines()[1]
        'a,a.png,s,test,x'
    """
    from medfleet.tables import read_table, write_table
    from medfleet.tasks import Manifest

    path = Path(manifest_path)
    manifest = Manifest.load(path)
    for task in manifest.tasks:
        table = manifest.resolve(task.table)
        rows = read_table(table)
        columns = list(rows[0]) if rows else None
        write_table(table, [{**row, "split": "test"} for row in rows], columns)
    metadata = dict(manifest.metadata)
    metadata["split"] = "test-only: every row is in test (an external set)"
    manifest = manifest.model_copy(update={"metadata": metadata})
    return manifest.save(path)
