"""Process batch files with a configuration: what ``medfleet monitor run`` does.

Steps: load the configured references (a site's agent is reset only when its
reference actually changed), read every input file into batches, vet every
batch (known site, reference available, valid outputs) before processing any,
then process them in time order. Batches already in the store are skipped, so
running the same files again adds nothing.

Example:
    >>> import tempfile, pathlib
    >>> import numpy as np, pandas as pd
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> reference = pd.DataFrame({"site": "a", "prob": np.linspace(0.1, 0.9, 50)})
    >>> reference.to_csv(d / "ref.csv", index=False)
    >>> times = pd.date_range("2024-01-01", periods=24, freq="h")
    >>> outputs = pd.DataFrame({"site": "a", "time": times, "prob": np.linspace(0.1, 0.9, 24)})
    >>> outputs.to_csv(d / "out.csv", index=False)
    >>> cfg = MonitorConfig(sites=["a"], scheme="site", references={"a": d / "ref.csv"},
    ...                     input={"paths": [d / "out.csv"]}, db=d / "m.sqlite")
    >>> run_config(cfg).new
    1
    >>> run_config(cfg).already_stored
    1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.monitor.agent import Coordinator
from medfleet.monitor.batches import (
    BatchError,
    OutputBatch,
    check_against,
    read_batches,
    read_reference,
)
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.records import BatchReport
from medfleet.monitor.store import MonitorStore
from medfleet.monitor.store_target import display_target, open_store
from medfleet.utils.progress import ProgressCallback


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
        db: Store path.
        new: Batches processed in this run.
        already_stored: Batches skipped because the store had them.
        references_set: Sites whose reference was (re)set.
        reports: Reports of the batches processed in this run.
        sites: Per-site totals over the whole store.
    """

    db: str
    new: int = 0
    already_stored: int = 0
    references_set: list[str] = field(default_factory=list)
    reports: list[BatchReport] = field(default_factory=list)
    sites: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def new_alerts(self) -> list[BatchReport]:
        """Reports of this run that raised an alert."""
        return [r for r in self.reports if r.alert]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (reports of drifted batches and alerts only, to stay short)."""
        return {
            "db": self.db,
            "new": self.new,
            "already_stored": self.already_stored,
            "references_set": self.references_set,
            "drifted": [r.to_dict() for r in self.reports if r.drift],
            "alerts": [r.to_dict() for r in self.new_alerts],
            "sites": self.sites,
        }


def _same(a: dict[str, np.ndarray] | None, b: dict[str, np.ndarray]) -> bool:
    if a is None or set(a) != set(b):
        return False
    return all(a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in b)


def load_references(config: MonitorConfig, coord: Coordinator) -> list[str]:
    """Set the configured references that differ from the stored ones; return those sites.

    The key ``"*"`` names one table holding every site's rows (site column).
    """
    changed = []
    inp = config.input
    wanted: dict[str, Path] = {}
    for key, path in config.references.items():
        if key == "*":
            import pandas as pd  # noqa: F401  (read_reference uses pandas)

            from medfleet.monitor.batches import read_table_file

            frame = read_table_file(path)
            if inp.site_column not in frame.columns:
                raise BatchError(
                    f"{path}: a shared reference table needs a {inp.site_column!r} column",
                    field=inp.site_column,
                )
            for site in sorted(frame[inp.site_column].astype(str).unique()):
                if not config.sites or site in config.sites:
                    wanted.setdefault(site, path)
        else:
            wanted[key] = path
    for site, path in sorted(wanted.items()):
        outputs = read_reference(
            path,
            site,
            site_column=inp.site_column,
            kinds=config.outputs,
            reserved={inp.time_column, inp.batch_column},
        )
        if not _same(coord.store.load_reference(site), outputs):
            coord.set_reference(site, outputs)
            changed.append(site)
    return changed


def read_inputs(config: MonitorConfig, paths: list[Path] | None = None) -> list[OutputBatch]:
    """Read every input file's batches (sorted by time, then site)."""
    inp = config.input
    batches: list[OutputBatch] = []
    for path in paths if paths is not None else inp.paths:
        batches.extend(
            read_batches(
                path,
                site_column=inp.site_column,
                time_column=inp.time_column,
                batch_column=inp.batch_column,
                batch_freq=inp.batch_freq,
                kinds=config.outputs,
            )
        )
    seen: set[tuple[str, str]] = set()
    for b in batches:
        key = (b.site, b.batch_id)
        if key in seen:
            raise BatchError(
                "the same batch id appears in more than one input file",
                site=b.site,
                batch_id=b.batch_id,
                field="batch_id",
                fix="give each batch a unique id per site",
            )
        seen.add(key)
    batches.sort(key=lambda b: (b.timestamp, b.site, b.batch_id))
    return batches


def run_config(
    config: MonitorConfig,
    *,
    paths: list[Path] | None = None,
    db: Path | str | None = None,
    store: MonitorStore | None = None,
    progress: ProgressCallback | None = None,
) -> RunSummary:
    """Run the monitor over the configured (or given) files.

    Args:
        config: Configuration.
        paths: Input files (default ``config.input.paths``).
        db: Store path or database URL (default ``config.db``); ignored when ``store``
            is given.
        store: A store to use instead of opening SQLite.
        progress: ``(done, total)`` callback.

    Raises:
        BatchError: Any bad file, batch, site or reference; no batch of the run is
            processed then (references already set stay set).
    """
    own = store is None
    target = db or config.db
    st = store if store is not None else open_store(target)
    try:
        coord = Coordinator(config, st)
        summary = RunSummary(db=display_target(target) if own else type(st).__name__)
        summary.references_set = load_references(config, coord)
        batches = read_inputs(config, paths)
        if not batches:
            raise BatchError(
                "no input batches",
                field="input.paths",
                fix="list output tables under input.paths or pass --input",
            )
        pending = []
        first: dict[str, OutputBatch] = {}
        for b in batches:
            if st.get_report(b.site, b.batch_id) is not None:
                summary.already_stored += 1
            else:
                coord.check(b)
                # A site's batches must carry the same outputs (a reference still forming
                # from them would otherwise refuse one midway through the run).
                check_against(
                    b.outputs, first.setdefault(b.site, b).outputs, site=b.site, batch_id=b.batch_id
                )
                pending.append(b)
        for i, b in enumerate(pending):
            summary.reports.append(coord.process(b))
            summary.new += 1
            if progress is not None:
                progress(i + 1, len(pending))
        summary.sites = coord.summary()
        return summary
    finally:
        if own:
            st.close()
