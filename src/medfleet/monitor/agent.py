"""Site agents and the coordinator that routes batches to them.

A :class:`SiteAgent` holds one site's monitoring state: its reference scheme,
calibrated thresholds, and the run of drifted batches that decides alerts.
For each batch it tests every output column against the reference, corrects
the p-values for multiple testing, grades severity, decides whether to raise
an alert, and computes its next state *without* changing itself.

The :class:`Coordinator` checks a batch (known site, reference available,
valid outputs), asks the site's agent for its verdict, commits the report,
the agent's next state and any alert to the store in one transaction, and
only then lets the agent adopt the new state. Re-processing a stored
``(site, batch_id)`` returns the stored report and changes nothing, so a
process killed mid-stream can be restarted and fed the same batches again.

Which test decides an output column: the first listed in ``config.tests``
that applies to its kind (``ks``/``wasserstein``/``psi``/``js``/``kl`` for
probabilities and scores, ``chi2`` for class labels, ``mmd_linear``/``mmd_perm``
for embeddings); with none listed, ``ks``, ``chi2`` and ``mmd_linear``.

Example:
    >>> import numpy as np
    >>> from medfleet.monitor.config import MonitorConfig
    >>> from medfleet.monitor.store import MemoryStore
    >>> rng = np.random.default_rng(0)
    >>> coord = Coordinator(MonitorConfig(sites=["a"], scheme="site"), MemoryStore())
    >>> coord.set_reference("a", {"prob": rng.beta(2, 5, 1000)})
    >>> coord.process(OutputBatch("a", "b1", 0, {"prob": rng.beta(2, 5, 300)})).drift
    False
    >>> coord.process(OutputBatch("a", "b2", 0, {"prob": rng.beta(5, 2, 300)})).severity.value
    'severe'
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medfleet.monitor import two_sample as T
from medfleet.monitor.batches import (
    BatchError,
    OutputBatch,
    OutputKind,
    check_against,
    output_columns,
    output_kind,
    outputs_digest,
    validate_outputs,
)
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.records import Alert, BatchReport, utc_now
from medfleet.monitor.references import (
    AdaptiveReference,
    FixedReference,
    Outputs,
    ProductionReference,
    ReferenceScheme,
    concat_outputs,
    outputs_to_bytes,
)
from medfleet.monitor.severity import (
    ColumnCalibration,
    Severity,
    calibrate_column,
    label_calibration,
    n_bucket,
    stable_seed,
    total_variation,
)
from medfleet.monitor.store import AgentState, MonitorStore, Revision, StaleStateError, StoreError

__all__ = ["AgentStep", "Alert", "BatchReport", "Coordinator", "SiteAgent", "Submission"]

CONTINUOUS_TESTS = ("ks", "wasserstein", "psi", "js", "kl")
LABEL_TESTS = ("chi2",)
MULTIVARIATE_TESTS = ("mmd_linear", "mmd_perm")
_DEFAULT = {"continuous": "ks", "label": "chi2", "embedding": "mmd_linear"}


def _kind_group(kind: OutputKind) -> str:
    if kind is OutputKind.label:
        return "label"
    if kind is OutputKind.embedding:
        return "embedding"
    return "continuous"


def deciding_test(kind: OutputKind, tests: list[str]) -> str:
    """The test that decides a column of this kind: the first applicable one listed.

    Example:
        >>> deciding_test(OutputKind.label, ["psi", "chi2"])
        'chi2'
        >>> deciding_test(OutputKind.score, ["chi2"])
        'ks'
    """
    group = _kind_group(kind)
    allowed = {"continuous": CONTINUOUS_TESTS, "label": LABEL_TESTS}.get(group, MULTIVARIATE_TESTS)
    return next((t for t in tests if t in allowed), _DEFAULT[group])


def fingerprint(outputs: Mapping[str, np.ndarray] | None) -> int:
    """CRC of a reference's contents (0 for None): detects a changed initial reference.

    Example:
        >>> fingerprint({"p": np.zeros(2)}) == fingerprint({"p": np.zeros(2)})
        True
    """
    return 0 if outputs is None else zlib.crc32(outputs_to_bytes(outputs))


def _statistic(test: str, ref: np.ndarray, cur: np.ndarray, bins: int) -> float:
    if test == "ks":
        return float(T.ks_statistic(ref, cur)[0])
    if test == "chi2":
        return float(T.chi2_statistic(ref, cur)[0][0])
    kwargs = {"bins": bins} if test in T.HISTOGRAM_TESTS else {}
    return float(T.DISTANCE_STATISTICS[test](ref, cur, **kwargs)[0])


@dataclass
class _Snapshot:
    scheme: ReferenceScheme
    calibrations: dict[str, ColumnCalibration] = field(default_factory=dict)
    consecutive: int = 0
    episode: Severity | None = None
    processed: int = 0
    fingerprint: int = 0


@dataclass(frozen=True)
class Submission:
    """What :meth:`Coordinator.submit` did with a batch.

    Attributes:
        report: The batch's report (the stored one when the batch was already stored).
        new: True when this call stored the batch; False when it was stored before.
    """

    report: BatchReport
    new: bool


@dataclass
class AgentStep:
    """An agent's verdict on a batch and the state it would move to.

    Attributes:
        report: The batch report.
        alert: The alert raised, if any.
        state: The agent's next state, for the store.
    """

    report: BatchReport
    alert: Alert | None
    state: AgentState
    _next: _Snapshot = field(repr=False)


class SiteAgent:
    """One site's stateful drift monitor.

    Args:
        site: Site name.
        config: Monitoring configuration.
        scheme: The site's reference scheme.
        initial_fingerprint: :func:`fingerprint` of the fixed/initial reference.
    """

    def __init__(
        self,
        site: str,
        config: MonitorConfig,
        scheme: ReferenceScheme,
        initial_fingerprint: int = 0,
    ) -> None:
        self.site = site
        self.config = config
        self._snap = _Snapshot(scheme, fingerprint=initial_fingerprint)
        #: The store revision the agent's state was loaded at (None: not tracked).
        self.revision: Revision | None = None

    @property
    def scheme(self) -> ReferenceScheme:
        """The reference scheme now in force."""
        return self._snap.scheme

    @property
    def processed(self) -> int:
        """Batches processed so far."""
        return self._snap.processed

    def state(self) -> AgentState:
        """The agent's persistent state."""
        return self._state_of(self._snap)

    @staticmethod
    def _state_of(snap: _Snapshot) -> AgentState:
        meta, arrays = snap.scheme.state()
        return AgentState(
            {
                "scheme": meta,
                "calibrations": {k: c.to_state() for k, c in snap.calibrations.items()},
                "consecutive": snap.consecutive,
                "episode": snap.episode.value if snap.episode else None,
                "processed": snap.processed,
                "fingerprint": snap.fingerprint,
            },
            arrays,
        )

    @classmethod
    def restore(
        cls,
        site: str,
        config: MonitorConfig,
        state: AgentState,
        initial: Outputs | None,
    ) -> SiteAgent:
        """Rebuild an agent from its stored state; calibrations of a changed reference are dropped.

        Args:
            site: Site name.
            config: Monitoring configuration.
            state: State from :meth:`state` (via the store).
            initial: The fixed or initial reference now in force.
        """
        meta = state.meta
        scheme = ReferenceScheme.from_state(meta["scheme"], state.arrays, initial)
        fp = fingerprint(initial)
        agent = cls(site, config, scheme, fp)
        snap = agent._snap
        same_initial = meta.get("fingerprint") == fp
        # Calibrations of version 0 were made from the fixed/initial reference: keep them
        # only if that reference is unchanged. Later versions come from absorbed batches.
        snap.calibrations = {
            k: ColumnCalibration.from_state(v)
            for k, v in meta["calibrations"].items()
            if same_initial or v["version"] > 0
        }
        snap.consecutive = int(meta["consecutive"])
        snap.episode = Severity(meta["episode"]) if meta.get("episode") else None
        snap.processed = int(meta["processed"])
        return agent

    # ------------------------------------------------------------------ evaluation

    def _calibration(
        self,
        snap: _Snapshot,
        column: str,
        kind: OutputKind,
        test: str,
        ref: np.ndarray,
        n: int,
        alpha: float,
    ) -> tuple[ColumnCalibration, bool]:
        th = self.config.thresholds
        if kind is OutputKind.label:
            return label_calibration(th.label_moderate, th.label_severe), False
        bucket = n_bucket(n)
        key = f"{column}|{test}|{bucket}"
        cached = snap.calibrations.get(key)
        version = snap.scheme.version
        if cached is not None and 0 <= version - cached.version < th.recalibrate_every:
            return cached, False
        cal = calibrate_column(
            ref,
            bucket,
            test,
            kind.value,
            method=th.method,
            alpha=alpha,
            moderate=th.moderate,
            severe=th.severe,
            moderate_factor=th.moderate_factor,
            severe_factor=th.severe_factor,
            n_boot=th.bootstrap,
            n_shift_boot=th.shift_bootstrap,
            bins=self.config.bins,
            max_reference=th.max_reference,
            seed=stable_seed(th.seed, self.site, column, test, bucket, version),
            version=version,
        )
        return cal, True

    def evaluate(self, batch: OutputBatch) -> AgentStep:
        """Judge ``batch`` against the current reference without changing the agent.

        Raises:
            BatchError: The batch's outputs are invalid or do not match the reference.
        """
        cfg = self.config
        snap = self._snap
        ref = snap.scheme.current()
        outputs = self.checked_outputs(batch)
        digest = outputs_digest(outputs)
        n = int(next(iter(outputs.values())).shape[0])
        nxt = _Snapshot(
            snap.scheme,
            dict(snap.calibrations),
            snap.consecutive,
            snap.episode,
            snap.processed + 1,
            snap.fingerprint,
        )
        if ref is None or not snap.scheme.deciding():
            report = BatchReport(
                site=batch.site,
                batch_id=batch.batch_id,
                timestamp=batch.timestamp,
                n=n,
                scheme=cfg.scheme,
                test=cfg.tests[0],
                statistic=None,
                p_value=None,
                severity=Severity.none,
                drift=False,
                alert=False,
                status="warmup",
                created=utc_now(),
                digest=digest,
            )
            nxt.scheme = snap.scheme.observe(outputs, drift=False)
            return AgentStep(report, None, self._state_of(nxt), nxt)
        return self._decide(batch, outputs, ref, n, nxt, digest)

    def checked_outputs(self, batch: OutputBatch) -> Outputs:
        """The batch's validated outputs, which must match the reference's names and shapes.

        Raises:
            BatchError: Invalid values, or an output missing, unexpected or shaped unlike
                the reference (or, while the reference forms, unlike its first batch).
        """
        where = {"site": batch.site, "batch_id": batch.batch_id}
        outputs = validate_outputs(batch.outputs, self.config.outputs, **where)
        template = self._snap.scheme.template()
        if template is not None:
            check_against(outputs, template, **where)
        return outputs

    def _decide(
        self,
        batch: OutputBatch,
        outputs: Outputs,
        ref: Outputs,
        n: int,
        nxt: _Snapshot,
        digest: str,
    ) -> AgentStep:
        cfg = self.config
        kinds = cfg.outputs
        ref_cols = output_columns(ref, kinds)
        cur_cols = output_columns(outputs, kinds)
        names: list[str] = []
        tests: list[str] = []
        stats: list[float] = []
        raw_p: list[float] = []
        cals: list[ColumnCalibration | None] = []
        grade_values: list[float] = []
        recorded: dict[str, dict[str, float]] = {}
        k_total = len(ref_cols) + sum(
            1 for name in ref if output_kind(name, kinds) is OutputKind.embedding
        )
        col_alpha = cfg.alpha / k_total if cfg.correction != "none" else cfg.alpha
        for column, (kind, rv) in ref_cols.items():
            cv = cur_cols[column][1]
            test = deciding_test(kind, cfg.tests)
            cal, fresh = self._calibration(nxt, column, kind, test, rv, n, col_alpha)
            if fresh:
                nxt.calibrations[f"{column}|{test}|{n_bucket(n)}"] = cal
            if test == "ks":
                stat = float(T.ks_statistic(rv, cv)[0])
                p = float(T.ks_pvalue(np.array([stat]), rv.size, cv.size)[0])
            elif test == "chi2":
                s_arr, p_arr = T.chi2_statistic(rv, cv)
                stat, p = float(s_arr[0]), float(p_arr[0])
            else:
                stat = _statistic(test, rv, cv, cfg.bins)
                p = cal.p_value(stat)
            names.append(column)
            tests.append(test)
            stats.append(stat)
            raw_p.append(p)
            cals.append(cal)
            grade_values.append(total_variation(rv, cv) if kind is OutputKind.label else stat)
            for other in cfg.tests:
                ok = (kind is OutputKind.label and other in LABEL_TESTS) or (
                    kind is not OutputKind.label and other in CONTINUOUS_TESTS
                )
                if ok:
                    value = stat if other == test else _statistic(other, rv, cv, cfg.bins)
                    recorded.setdefault(other, {})[column] = value
        for name, arr in ref.items():
            if output_kind(name, kinds) is not OutputKind.embedding:
                continue
            test = deciding_test(OutputKind.embedding, cfg.tests)
            seed = stable_seed(cfg.thresholds.seed, self.site, name, batch.batch_id)
            method = "linear" if test == "mmd_linear" else "permutation"
            res = T.mmd_test(arr, outputs[name], method=method, seed=seed)
            names.append(name)
            tests.append(test)
            stats.append(float(res.statistic[0]))
            raw_p.append(float(res.p_value[0]))
            cals.append(None)
            grade_values.append(float(res.statistic[0]))
            recorded.setdefault(test, {})[name] = float(res.statistic[0])
        adjusted = T.adjust_pvalues(np.array(raw_p), cfg.correction)
        drifts = adjusted < cfg.alpha
        columns: dict[str, dict[str, Any]] = {}
        severities = []
        for i, column in enumerate(names):
            cal = cals[i]
            sev = (
                cal.grade(grade_values[i], bool(drifts[i]))
                if cal is not None
                else (Severity.mild if drifts[i] else Severity.none)
            )
            severities.append(sev)
            columns[column] = {
                "test": tests[i],
                "statistic": stats[i],
                "p_value": float(adjusted[i]),
                "raw_p_value": raw_p[i],
                "drift": bool(drifts[i]),
                "severity": sev.value,
            }
            if cal is not None and cal.label:
                columns[column]["tv"] = grade_values[i]
        drift = bool(drifts.any())
        # Severity comes from continuous outputs when there are any: class labels
        # then only decide whether the batch drifted (at least mild).
        graded = [
            sev
            for sev, cal in zip(severities, cals, strict=True)
            if cal is not None and not cal.label
        ]
        severity = Severity.worst(graded) if graded else Severity.worst(severities)
        if drift and severity is Severity.none:
            severity = Severity.mild
        lead = self._lead(names, ref_cols)
        li = names.index(lead)
        lead_cal = cals[li]
        thresholds = lead_cal.thresholds() if lead_cal is not None and not lead_cal.label else {}

        alert_obj = None
        if drift:
            nxt.consecutive += 1
            escalates = nxt.episode is None or (
                cfg.alert.on_escalation and severity.rank > nxt.episode.rank
            )
            if nxt.consecutive >= cfg.alert.consecutive and escalates:
                nxt.episode = severity

                def worst_first(i: int) -> tuple[bool, int, float]:
                    label = cals[i] is None or cals[i].label  # type: ignore[union-attr]
                    return (label and bool(graded), -severities[i].rank, float(adjusted[i]))

                wi = min(range(len(names)), key=worst_first)
                alert_obj = Alert(
                    site=batch.site,
                    batch_id=batch.batch_id,
                    timestamp=batch.timestamp,
                    severity=severity,
                    message=(
                        f"{severity.value} drift at site {batch.site!r}, batch "
                        f"{batch.batch_id!r}: {tests[wi]} {stats[wi]:.4g} on {names[wi]} "
                        f"(p={float(adjusted[wi]):.2g}); {nxt.consecutive} drifted "
                        "batch(es) in a row"
                    ),
                )
        else:
            nxt.consecutive = 0
            nxt.episode = None
        report = BatchReport(
            site=batch.site,
            batch_id=batch.batch_id,
            timestamp=batch.timestamp,
            n=n,
            scheme=cfg.scheme,
            test=tests[li],
            statistic=stats[li],
            p_value=float(adjusted.min()),
            severity=severity,
            drift=drift,
            alert=alert_obj is not None,
            status="ok",
            created=utc_now(),
            lead=lead,
            thresholds=thresholds,
            columns=columns,
            statistics=recorded,
            digest=digest,
        )
        nxt.scheme = nxt.scheme.observe(outputs, drift=drift)
        return AgentStep(report, alert_obj, self._state_of(nxt), nxt)

    def _lead(self, names: list[str], ref_cols: Mapping[str, Any]) -> str:
        if self.config.lead and self.config.lead in names:
            return self.config.lead
        for column in names:
            if column in ref_cols and ref_cols[column][0] is not OutputKind.label:
                return column
        return names[0]

    def apply(self, step: AgentStep) -> None:
        """Adopt the state computed by :meth:`evaluate` (after it has been stored)."""
        self._snap = step._next

    def process(self, batch: OutputBatch) -> BatchReport:
        """Evaluate and adopt in one go (no store involved).

        Example:
            >>> import numpy as np
            >>> from medfleet.monitor.config import MonitorConfig
            >>> agent = SiteAgent("a", MonitorConfig(scheme="site"),
            ...                   FixedReference({"prob": np.linspace(0.01, 0.99, 500)}))
            >>> agent.process(OutputBatch("a", "1", 0, {"prob": np.full(100, 0.99)})).drift
            True
        """
        step = self.evaluate(batch)
        self.apply(step)
        return step.report


class Coordinator:
    """Routes batches to site agents, persists their verdicts, raises alerts.

    Several coordinators (processes, machines) may share one store: when the store
    tracks revisions (``state_revision``), each commit carries the revision its agent's
    state was loaded at, and a commit from a state another coordinator has moved on
    since is refused by the store; the agent is then reloaded and the batch judged
    again, so every batch is judged against the latest committed state.

    Args:
        config: Monitoring configuration (sites, scheme, tests, thresholds).
        store: Where references, agent state, reports and alerts live; agents
            resume from the state stored there.
    """

    #: Times a batch is judged again after another writer moved the site's state on.
    MAX_STALE_RETRIES = 20

    def __init__(self, config: MonitorConfig, store: MonitorStore) -> None:
        self.config = config
        self.store = store
        self._agents: dict[str, SiteAgent] = {}
        self._pool: Outputs | None = None
        self._pool_ready = False
        self._pool_revision: int | None = None
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- references

    def _check_site(self, site: str, batch_id: str | None) -> None:
        if self.config.sites and site not in self.config.sites:
            raise BatchError(
                f"unknown site (known: {', '.join(self.config.sites)})",
                site=site,
                batch_id=batch_id,
                field="site",
                fix="add the site to the configuration's sites",
            )

    def set_reference(self, site: str, outputs: Mapping[str, Any]) -> None:
        """Store a site's reference outputs (e.g. validation outputs) and reset its agent.

        Under the ``global`` scheme every agent's pooled reference changes too.

        Raises:
            BatchError: Unknown site or invalid outputs (field and reason named).
        """
        with self._lock:
            self._check_site(site, "reference")
            arrays = validate_outputs(outputs, self.config.outputs, site=site, batch_id="reference")
            self.store.save_reference(site, arrays)
            self._pool_ready = False
            self._agents.pop(site, None)
            if self.config.scheme == "global":
                self._agents.clear()

    def reference_for(self, site: str) -> Outputs | None:
        """The fixed or initial reference of ``site``'s scheme (None when it forms from batches)."""
        scheme = self.config.scheme
        if scheme == "site" or (scheme == "adaptive" and self.config.adaptive.initial == "site"):
            return self.store.load_reference(site)
        if scheme == "global" or (
            scheme == "adaptive" and self.config.adaptive.initial == "global"
        ):
            return self._global_pool()
        return None

    def _global_pool(self) -> Outputs | None:
        if not self._pool_ready:
            refs = [self.store.load_reference(s) for s in self.store.reference_sites()]
            try:
                self._pool = concat_outputs([r for r in refs if r is not None]) or None
            except ValueError as exc:
                raise BatchError(f"references cannot be pooled: {exc}", field="reference") from exc
            self._pool_ready = True
        return self._pool

    def _new_scheme(self, site: str, initial: Outputs | None) -> ReferenceScheme:
        cfg = self.config
        if cfg.scheme in ("site", "global"):
            return FixedReference(initial, name=cfg.scheme)
        if cfg.scheme == "production":
            return ProductionReference(cfg.production.batches)
        a = cfg.adaptive
        return AdaptiveReference(
            initial, a.mode, a.window, a.decay, a.warmup, stable_seed(cfg.thresholds.seed, site)
        )

    def agent(self, site: str) -> SiteAgent:
        """The agent of ``site``: cached, restored from the store, or new.

        Raises:
            BatchError: Unknown site, or the scheme needs a reference the site lacks.
        """
        with self._lock:
            if site in self._agents:
                return self._agents[site]
            self._check_site(site, None)
            # The revision is read before the reference and state it guards, so a change
            # made in between shows as a stale revision at commit, never the reverse.
            revision = self._revision(site)
            if revision is not None and revision[1] != self._pool_revision:
                self._pool_ready = False  # another writer may have changed a reference
                self._pool_revision = revision[1]
            initial = self.reference_for(site)
            needs = self.config.scheme in ("site", "global") or (
                self.config.scheme == "adaptive" and self.config.adaptive.initial == "site"
            )
            if needs and initial is None:
                what = "this site" if self.config.scheme != "global" else "any site"
                raise BatchError(
                    f"no reference for {what} under scheme {self.config.scheme!r}",
                    site=site,
                    field="reference",
                    fix="set one with Coordinator.set_reference or the config's references",
                )
            state = self.store.load_state(site)
            if state is not None:
                agent = SiteAgent.restore(site, self.config, state, initial)
            else:
                agent = SiteAgent(
                    site, self.config, self._new_scheme(site, initial), fingerprint(initial)
                )
            agent.revision = revision
            self._agents[site] = agent
            return agent

    def _revision(self, site: str) -> Revision | None:
        reader = getattr(self.store, "state_revision", None)
        return tuple(reader(site)) if reader is not None else None  # type: ignore[return-value]

    def _commit(self, agent: SiteAgent, step: AgentStep) -> bool:
        """Commit ``step`` with the agent's revision (when tracked); adopt it when stored."""
        if agent.revision is None:
            stored = self.store.commit_batch(step.report, step.state, step.alert)
        else:
            stored = self.store.commit_batch(
                step.report, step.state, step.alert, expected_revision=agent.revision
            )
        if stored:
            agent.apply(step)
            if agent.revision is not None:
                agent.revision = (agent.revision[0] + 1, agent.revision[1])
        return stored

    # ---------------------------------------------------------------- processing

    def _check_ids(self, batch: OutputBatch) -> None:
        self._check_site(batch.site, batch.batch_id)
        if not batch.batch_id.strip():
            raise BatchError("batch id is empty", site=batch.site, field="batch_id")

    def _batch_agent(self, batch: OutputBatch) -> SiteAgent:
        """:meth:`agent` of the batch's site, its errors naming the batch."""
        try:
            return self.agent(batch.site)
        except BatchError as exc:
            raise BatchError(
                exc.reason,
                site=batch.site,
                batch_id=batch.batch_id,
                field=exc.field,
                fix=exc.fix,
            ) from exc

    def check(self, batch: OutputBatch) -> None:
        """Raise :class:`BatchError` if ``batch`` would be refused; changes nothing.

        Checks the site, the batch id, that the site's scheme has its reference, and
        the outputs (values, and names and shapes against the reference). Use it to
        vet a whole file before processing any of it.
        """
        with self._lock:
            self._check_ids(batch)
            self._batch_agent(batch).checked_outputs(batch)

    def process(self, batch: OutputBatch) -> BatchReport:
        """Judge one batch, store the verdict atomically, and return its report.

        A batch already stored (same site and batch id) returns its stored report
        and changes nothing.

        Raises:
            BatchError: Unknown site, missing reference, or invalid outputs; nothing
                is stored.
        """
        return self.submit(batch).report

    def submit(self, batch: OutputBatch) -> Submission:
        """:meth:`process`, also telling whether this call stored the batch.

        The answer is exact with several processes on one store: the store's commit
        inserts the report under the unique ``(site, batch_id)`` inside the transaction, so
        exactly one writer gets ``new=True`` and every other one gets the stored report.

        Example:
            >>> import numpy as np
            >>> from medfleet.monitor.store import MemoryStore
            >>> coord = Coordinator(MonitorConfig(scheme="production"), MemoryStore())
            >>> batch = OutputBatch("a", "b1", 0, {"prob": np.array([0.2, 0.4])})
            >>> coord.submit(batch).new, coord.submit(batch).new
            (True, False)
        """
        with self._lock:
            self._check_ids(batch)
            for _ in range(self.MAX_STALE_RETRIES):
                stored = self.store.get_report(batch.site, batch.batch_id)
                if stored is not None:
                    return Submission(stored, new=False)
                agent = self._batch_agent(batch)
                step = agent.evaluate(batch)
                try:
                    committed = self._commit(agent, step)
                except StaleStateError:
                    # Another writer moved this site on: reload its state and judge again.
                    self._agents.pop(batch.site, None)
                    continue
                if committed:
                    return Submission(step.report, new=True)
                # Another writer stored this batch in the meantime: reload that agent state.
                self._agents.pop(batch.site, None)
                stored = self.store.get_report(batch.site, batch.batch_id)
                if stored is None:  # pragma: no cover - a store that lost a committed row
                    raise StoreError(
                        f"site {batch.site!r} batch {batch.batch_id!r}: the store refused the "
                        "batch as already stored but does not return it"
                    )
                return Submission(stored, new=False)
            raise StoreError(
                f"site {batch.site!r} batch {batch.batch_id!r}: other writers changed the "
                f"site's state {self.MAX_STALE_RETRIES} times while it was judged; send it again"
            )

    def process_many(self, batches: Iterable[OutputBatch]) -> list[BatchReport]:
        """Process batches in order; stops at the first invalid batch (earlier ones stay stored)."""
        return [self.process(b) for b in batches]

    def alerts(self, site: str | None = None) -> list[Alert]:
        """Alerts raised so far (from the store)."""
        return self.store.alerts(site)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per site: batches, drifted batches, alerts, latest severity.

        Example:
            >>> from medfleet.monitor.store import MemoryStore
            >>> Coordinator(MonitorConfig(), MemoryStore()).summary()
            {}
        """
        out = {}
        for site in self.store.sites():
            history = self.store.history(site)
            out[site] = {
                "batches": len(history),
                "drifted": sum(r.drift for r in history),
                "alerts": len(self.store.alerts(site)),
                "latest_severity": history[-1].severity.value if history else None,
            }
        return out


def with_site(batch: OutputBatch, site: str) -> OutputBatch:
    """A copy of ``batch`` attributed to another site (used to pool batches centrally).

    Example:
        >>> with_site(OutputBatch("a", "1", 0, {"p": [0.5]}), "all").site
        'all'
    """
    return replace(batch, site=site)
