"""merge_manifests: one manifest with every source's sites, tasks and rows, paths absolute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfleet.data.catalog import merge_manifests
from medfleet.data.io import write_png
from medfleet.errors import ManifestError
from medfleet.tables import read_table, write_table
from medfleet.tasks import Manifest, Site, TaskSpec
from medfleet.train.datasets import TaskDataset


def _source(folder: Path, site: str, task: TaskSpec, n: int) -> Path:
    """A manifest in ``folder`` with relative image (and mask) paths, like an adapter's."""
    rows = []
    for i in range(n):
        image = np.full((8, 8), 10 * i, np.uint8)
        write_png(folder / "img" / f"{site}{i}.png", image)
        row = {"case_id": f"{site}{i}", "image": f"img/{site}{i}.png", "site": site}
        row["split"] = ("train", "val", "test")[i % 3]
        if task.type.value == "segmentation":
            mask = np.zeros((8, 8), np.uint8)
            mask[2:5, 2:5] = 1
            write_png(folder / "masks" / f"{site}{i}.png", mask, label=True)
            row["mask"] = "" if i == 0 else f"masks/{site}{i}.png"  # one unlabelled row
        else:
            row["label"] = task.classes[i % 2]
        rows.append(row)
    write_table(folder / task.table, rows)
    manifest = Manifest(name=site, sites=[Site(name=site)], tasks=[task], metadata={"n": n})
    return manifest.save(folder / "manifest.yaml")


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    seg = TaskSpec(name="us_seg", type="segmentation", table="seg.csv", labels={0: "bg", 1: "x"})
    cls = TaskSpec(name="xr_cls", type="classification", table="cls.csv", classes=["a", "b"])
    return [_source(tmp_path / "one", "us", seg, 4), _source(tmp_path / "two", "xr", cls, 6)]


def test_merged_manifest_holds_every_site_task_and_row(sources, tmp_path):
    path = merge_manifests(sources, tmp_path / "merged", name="both")
    merged = Manifest.load(path)
    assert merged.name == "both"
    assert [s.name for s in merged.sites] == ["us", "xr"]
    assert [(t.name, t.type.value) for t in merged.tasks] == [
        ("us_seg", "segmentation"),
        ("xr_cls", "classification"),
    ]
    assert [s["name"] for s in merged.metadata["merged_from"]] == ["us", "xr"]
    for task, n, site in (("us_seg", 4, "us"), ("xr_cls", 6, "xr")):
        rows = read_table(merged.table_path(task))
        assert len(rows) == n and {r["site"] for r in rows} == {site}
        for row in rows:
            assert Path(row["image"]).is_absolute() and Path(row["image"]).is_file()
    seg_rows = read_table(merged.table_path("us_seg"))
    assert seg_rows[0]["mask"] == ""  # unlabelled rows stay unlabelled
    assert all(Path(r["mask"]).is_file() for r in seg_rows[1:])
    # the merged manifest trains: images and masks load from their original folders
    ds = TaskDataset(merged, "us_seg", ("train", "val", "test"), 8)
    assert len(ds) == 3 and int(ds[0].target.max()) == 1


def test_a_task_defined_twice_is_refused_naming_both_sources(sources, tmp_path):
    with pytest.raises(ManifestError, match=r"us.*also defined by"):
        merge_manifests([sources[0], sources[0]], tmp_path / "merged")
    with pytest.raises(ManifestError, match="no manifest"):
        merge_manifests([], tmp_path / "merged")
