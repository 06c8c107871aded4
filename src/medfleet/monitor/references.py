"""Reference schemes: what each site's batches are compared with.

* :class:`FixedReference` - a fixed sample: the site's own validation outputs
  (scheme ``site``), the pooled references of all sites (``global``), or, for
  the centralised baseline, the pool compared with every site's pooled batches.
* :class:`ProductionReference` - the site's first ``batches`` production
  batches; no decisions until they have arrived.
* :class:`AdaptiveReference` - starts from an initial reference (global pool,
  the site's own, or nothing), absorbs the first ``warmup`` batches
  unconditionally, then follows recent batches judged stable: a sliding
  window of the last ``window`` stable batches, or exponential weighting where
  the warm-up batches form a pool and each later stable batch replaces a
  fraction ``decay`` of its rows (older rows' weight decays geometrically).
  The initial reference is in force only until the first batch is absorbed.
  A batch judged drifted is never absorbed.

References are dicts of output name -> array. Schemes are value-like: a
scheme's :meth:`~ReferenceScheme.observe` returns a *new* scheme and leaves the
old one untouched, so an agent can compute its next state, store it in one
transaction, and only then adopt it.

Example:
    >>> import numpy as np
    >>> ref = AdaptiveReference({"prob": np.full(4, 0.2)}, mode="window", window=1, warmup=0)
    >>> ref = ref.observe({"prob": np.full(4, 0.9)}, drift=True)
    >>> float(ref.current()["prob"].mean())
    0.2
    >>> ref = ref.observe({"prob": np.full(4, 0.3)}, drift=False)
    >>> float(ref.current()["prob"].mean())
    0.3
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from medfleet.monitor.severity import stable_seed

Outputs = dict[str, np.ndarray]


def concat_outputs(parts: list[Mapping[str, np.ndarray]]) -> Outputs:
    """Stack several output dicts row-wise (they must share names and column counts).

    Example:
        >>> concat_outputs([{"p": np.zeros(2)}, {"p": np.ones(3)}])["p"].tolist()
        [0.0, 0.0, 1.0, 1.0, 1.0]
    """
    if not parts:
        return {}
    names = list(parts[0])
    out = {}
    for name in names:
        arrays = []
        for i, part in enumerate(parts):
            if name not in part:
                raise ValueError(f"output {name!r} missing from reference part {i}")
            arrays.append(np.asarray(part[name]))
        shapes = {a.shape[1:] for a in arrays}
        if len(shapes) > 1:
            raise ValueError(
                f"output {name!r} has different column counts across references: {shapes}"
            )
        out[name] = np.concatenate(arrays, axis=0)
    return out


def n_rows(outputs: Mapping[str, np.ndarray]) -> int:
    """Rows of an output dict (0 when empty)."""
    return int(next(iter(outputs.values())).shape[0]) if outputs else 0


def outputs_to_bytes(outputs: Mapping[str, np.ndarray]) -> bytes:
    """Serialise an output dict to ``.npz`` bytes (no pickling).

    Example:
        >>> outputs_from_bytes(outputs_to_bytes({"p": np.arange(3.0)}))["p"].tolist()
        [0.0, 1.0, 2.0]
    """
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in outputs.items()})
    return buf.getvalue()


def outputs_from_bytes(data: bytes) -> Outputs:
    """Inverse of :func:`outputs_to_bytes`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


class ReferenceScheme(ABC):
    """A site agent's reference, evolving (or not) as batches are judged."""

    name: str = ""

    #: Incremented whenever the reference sample changes (calibrations key on it).
    version: int = 0

    @abstractmethod
    def current(self) -> Outputs | None:
        """The reference to test the next batch against, or None while it is being formed."""

    def deciding(self) -> bool:
        """Whether the next batch gets a drift decision (False during warm-up)."""
        return self.current() is not None

    def template(self) -> Outputs | None:
        """What every batch must carry (names and per-row shapes); None before the first batch.

        The reference in force, or, while it forms from batches, what those batches carry.
        """
        return self.current()

    @abstractmethod
    def observe(self, outputs: Outputs, drift: bool) -> ReferenceScheme:
        """Return the scheme after seeing a batch judged ``drift`` (self is unchanged)."""

    @abstractmethod
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-ready settings and counters, plus arrays, for the store."""

    @staticmethod
    def from_state(
        meta: dict[str, Any], arrays: Mapping[str, np.ndarray], initial: Outputs | None
    ) -> ReferenceScheme:
        """Rebuild a scheme from :meth:`state` (``initial``: the fixed/initial reference)."""
        kind = meta["type"]
        if kind == "fixed":
            return FixedReference(initial, name=meta.get("name", "site"))
        if kind == "production":
            return ProductionReference._restore(meta, arrays)
        if kind == "adaptive":
            return AdaptiveReference._restore(meta, arrays, initial)
        raise ValueError(f"unknown reference scheme state {kind!r}")


def _split_arrays(arrays: Mapping[str, np.ndarray], prefix: str) -> list[Outputs]:
    """Arrays named ``{prefix}{i}/{output}`` -> list of output dicts ordered by i."""
    parts: dict[int, Outputs] = {}
    for key, value in arrays.items():
        if key.startswith(prefix):
            index, name = key[len(prefix) :].split("/", 1)
            parts.setdefault(int(index), {})[name] = value
    return [parts[i] for i in sorted(parts)]


def _join_arrays(parts: list[Mapping[str, np.ndarray]], prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{i}/{k}": np.asarray(v) for i, p in enumerate(parts) for k, v in p.items()}


class FixedReference(ReferenceScheme):
    """A reference that never changes (site-specific, global pooled, centralised).

    Example:
        >>> ref = FixedReference({"p": np.zeros(3)}).observe({"p": np.ones(3)}, False)
        >>> ref.current()["p"].tolist()
        [0.0, 0.0, 0.0]
    """

    def __init__(self, reference: Outputs | None, name: str = "site") -> None:
        self.reference = reference
        self.name = name
        self.version = 0

    def current(self) -> Outputs | None:
        """The fixed reference."""
        return self.reference

    def observe(self, outputs: Outputs, drift: bool) -> FixedReference:
        """Unchanged."""
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Only the type: the reference itself lives in the store's reference table."""
        return {"type": "fixed", "name": self.name}, {}


class ProductionReference(ReferenceScheme):
    """The site's first ``batches`` production batches form its reference.

    Example:
        >>> ref = ProductionReference(batches=2)
        >>> ref.current() is None
        True
        >>> ref = ref.observe({"p": np.zeros(2)}, False).observe({"p": np.ones(2)}, False)
        >>> ref.current()["p"].tolist()
        [0.0, 0.0, 1.0, 1.0]
    """

    name = "production"

    def __init__(self, batches: int = 3, collected: list[Outputs] | None = None) -> None:
        self.batches = batches
        self.collected = list(collected or [])
        self.version = len(self.collected)
        self._cache: Outputs | None = None

    def current(self) -> Outputs | None:
        """None until ``batches`` batches have been collected."""
        if len(self.collected) < self.batches:
            return None
        if self._cache is None:
            self._cache = concat_outputs(self.collected)
        return self._cache

    def template(self) -> Outputs | None:
        """The reference, or while it forms the first collected batch (None before any).

        Example:
            >>> list(ProductionReference(3).observe({"p": np.zeros(2)}, False).template())
            ['p']
        """
        if len(self.collected) >= self.batches:
            return self.current()
        return self.collected[0] if self.collected else None

    def observe(self, outputs: Outputs, drift: bool) -> ProductionReference:
        """Collect the batch while the reference is still forming."""
        if len(self.collected) >= self.batches:
            return self
        return ProductionReference(self.batches, [*self.collected, outputs])

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Settings plus the collected batches."""
        return {"type": "production", "batches": self.batches}, _join_arrays(self.collected, "c")

    @classmethod
    def _restore(
        cls, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> ProductionReference:
        return cls(meta["batches"], _split_arrays(arrays, "c"))


class AdaptiveReference(ReferenceScheme):
    """A reference that follows recent stable batches and never absorbs drifted ones.

    Args:
        initial: Starting reference (None: the warm-up batches form it).
        mode: ``window`` or ``exponential``.
        window: Stable batches kept (``window``); the reference is their union.
        decay: Fraction of rows replaced per stable batch (``exponential``).
        warmup: First batches absorbed without a decision.
        seed: Seed for the rows replaced under ``exponential``.
    """

    name = "adaptive"

    def __init__(
        self,
        initial: Outputs | None,
        mode: str = "window",
        window: int = 8,
        decay: float = 0.3,
        warmup: int = 3,
        seed: int = 0,
    ) -> None:
        if mode not in ("window", "exponential"):
            raise ValueError(f"unknown adaptive mode {mode!r}; use 'window' or 'exponential'")
        self.initial = initial
        self.mode = mode
        self.window = window
        self.decay = decay
        self.warmup = warmup
        self.seed = seed
        self.seen = 0  # batches observed
        self.absorbed = 0  # batches absorbed
        self.recent: list[Outputs] = []  # window mode: last stable batches
        self.pool: Outputs | None = None  # exponential mode: the weighted sample
        self.version = 0
        self._cache: Outputs | None = None

    def _copy(self) -> AdaptiveReference:
        new = AdaptiveReference(
            self.initial, self.mode, self.window, self.decay, self.warmup, self.seed
        )
        new.seen, new.absorbed, new.version = self.seen, self.absorbed, self.version
        new.recent = list(self.recent)
        new.pool = self.pool
        return new

    def deciding(self) -> bool:
        """False during warm-up or while there is nothing to compare with."""
        return self.seen >= self.warmup and self.current() is not None

    def current(self) -> Outputs | None:
        """The reference now in force."""
        if self._cache is not None:
            return self._cache
        if self.mode == "window":
            ref = concat_outputs(self.recent) if self.recent else self.initial
        else:
            ref = self.pool if self.pool is not None else self.initial
        self._cache = ref
        return ref

    def observe(self, outputs: Outputs, drift: bool) -> AdaptiveReference:
        """Absorb the batch if it is a warm-up batch or judged stable; never if drifted."""
        new = self._copy()
        new.seen += 1
        warm = self.seen < self.warmup
        if drift and not warm:
            return new
        new.absorbed += 1
        new.version += 1
        if self.mode == "window":
            new.recent = [*self.recent, outputs][-self.window :]
        elif warm or self.pool is None:
            new.pool = concat_outputs([self.pool, outputs] if self.pool is not None else [outputs])
        else:
            new.pool = self._blend(outputs)
        return new

    def _blend(self, outputs: Outputs) -> Outputs:
        base = self.pool
        assert base is not None
        m, n = n_rows(base), n_rows(outputs)
        rng = np.random.default_rng(stable_seed(self.seed, self.absorbed))
        k = min(m, max(1, round(self.decay * m)))
        slots = rng.choice(m, k, replace=False)
        rows = rng.integers(0, n, size=k)
        out = {}
        for name, arr in base.items():
            new = np.array(arr, copy=True)
            new[slots] = np.asarray(outputs[name])[rows]
            out[name] = new
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Settings, counters and the absorbed rows (not the initial reference)."""
        meta = {
            "type": "adaptive",
            "mode": self.mode,
            "window": self.window,
            "decay": self.decay,
            "warmup": self.warmup,
            "seed": self.seed,
            "seen": self.seen,
            "absorbed": self.absorbed,
            "version": self.version,
        }
        arrays = _join_arrays(self.recent, "w")
        if self.pool is not None:
            arrays.update(_join_arrays([self.pool], "pool"))
        return meta, arrays

    @classmethod
    def _restore(
        cls, meta: dict[str, Any], arrays: Mapping[str, np.ndarray], initial: Outputs | None
    ) -> AdaptiveReference:
        new = cls(
            initial, meta["mode"], meta["window"], meta["decay"], meta["warmup"], meta["seed"]
        )
        new.seen, new.absorbed, new.version = meta["seen"], meta["absorbed"], meta["version"]
        new.recent = _split_arrays(arrays, "w")
        pools = _split_arrays(arrays, "pool")
        new.pool = pools[0] if pools else None
        return new
