"""Drift-monitoring benchmark: per-batch test latency and the simulator's quality table.

Latency: each two-sample test on one batch of 1k and of 10k outputs (3 probability
columns) against a reference of 5k outputs, side by side with a loop of SciPy's
``ks_2samp`` / ``wasserstein_distance`` over the columns and, where it imports,
frouros's detectors (fitted once on the reference, then ``compare`` per batch).
Times are the median over ``--repeats`` runs after one warm-up. The whole
per-batch path of a site agent (validation, tests, Holm, severity, alert, commit)
is timed too, with the in-memory and the SQLite store.

Quality: :func:`medfleet.monitor.simulate.run_simulation` on the default
simulation (6 sites, 40 batches of 200, five drifts of every type and size), every
scheme, with the targets of the issue checked: KS/Wasserstein/PSI under 5 ms per
1k batch, adaptive detection F1 >= 0.80 and severity F1 >= 0.85, every multi-site
scheme beating the centralised baseline.

Run ``python benchmarks/drift.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import functools
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from medfleet.monitor import two_sample as T
from medfleet.utils.atomic import write_text_atomic

REFERENCE_SIZE = 5000
COLUMNS = 3
TARGET_MS = 5.0


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _probabilities(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    z = rng.normal(size=(n, COLUMNS)) + np.array([0.0, 0.5, -0.5]) + shift
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _frouros_tests(ref: np.ndarray) -> tuple[dict[str, Callable[[np.ndarray], Any]], str | None]:
    try:
        import frouros
        from frouros.detectors.data_drift import EMD, JS, PSI, KSTest
    except Exception as exc:
        return {}, f"frouros not importable ({type(exc).__name__}: {exc})"
    detectors: dict[str, Callable[[np.ndarray], Any]] = {}
    for name, cls in (("ks", KSTest), ("wasserstein", EMD), ("psi", PSI), ("js", JS)):
        fitted = []
        for j in range(ref.shape[1]):
            det = cls()
            det.fit(X=ref[:, j])
            fitted.append(det)

        def run(cur: np.ndarray, fitted: list[Any] = fitted) -> list[Any]:
            return [d.compare(X=cur[:, j])[0] for j, d in enumerate(fitted)]

        detectors[name] = run
    return detectors, f"frouros {frouros.__version__}"


def _cases(
    ref: np.ndarray, ref_classes: np.ndarray, cur: np.ndarray
) -> list[tuple[str, str, Callable[[], Any]]]:
    """(tool, test, call) for one batch against the reference."""
    cur_classes = cur.argmax(axis=1)
    edges = T.quantile_edges(ref, 10)
    return [
        ("medfleet", "ks (statistic + p, Holm)", lambda: T.ks_test(ref, cur)),
        ("medfleet", "wasserstein", lambda: T.wasserstein_statistic(ref, cur)),
        ("medfleet", "psi (reference-quantile bins)", lambda: T.psi_statistic(ref, cur)),
        ("medfleet", "psi (bins cached)", lambda: T.psi_statistic(ref, cur, edges=edges)),
        ("medfleet", "js", lambda: T.js_statistic(ref, cur)),
        ("medfleet", "kl", lambda: T.kl_statistic(ref, cur)),
        ("medfleet", "chi2 (predicted class)", lambda: T.chi2_test(ref_classes, cur_classes)),
        ("medfleet", "mmd linear (3-d rows)", lambda: T.mmd_test(ref, cur)),
        (
            "medfleet",
            "mmd permutation (cap 500, 200 perms)",
            lambda: T.mmd_test(ref, cur, method="permutation"),
        ),
        (
            "scipy",
            "ks_2samp loop (method=asymp)",
            lambda: [stats.ks_2samp(ref[:, j], cur[:, j], method="asymp") for j in range(COLUMNS)],
        ),
        (
            "scipy",
            "ks_2samp loop (default, exact when small)",
            lambda: [stats.ks_2samp(ref[:, j], cur[:, j]) for j in range(COLUMNS)],
        ),
        (
            "scipy",
            "wasserstein_distance loop",
            lambda: [stats.wasserstein_distance(ref[:, j], cur[:, j]) for j in range(COLUMNS)],
        ),
    ]


def latency(repeats: int) -> tuple[list[dict[str, Any]], str | None]:
    """Median milliseconds per batch for every test and the comparison tools."""
    rng = np.random.default_rng(0)
    ref = _probabilities(rng, REFERENCE_SIZE)
    ref_classes = ref.argmax(axis=1)
    frouros_tests, frouros_note = _frouros_tests(ref)
    rows = []
    for n in (1000, 10000):
        cur = _probabilities(rng, n, 0.1)
        cases = _cases(ref, ref_classes, cur)
        for name, run in frouros_tests.items():
            cases.append(("frouros", name, functools.partial(run, cur)))
        for tool, test, fn in cases:
            reps = (
                repeats
                if "permutation" not in test and "exact" not in test
                else max(3, repeats // 5)
            )
            rows.append({"n": n, "tool": tool, "test": test, "ms": _median_ms(fn, reps)})
    rows.extend(agent_latency(repeats))
    return rows, frouros_note


def _agent_step(coord: Any, cur: np.ndarray, n: int) -> Callable[[], Any]:
    """A call processing a fresh batch (new id each time) of ``cur`` through ``coord``."""
    from medfleet.monitor.batches import OutputBatch

    counter = iter(range(10**9))

    def one() -> Any:
        outputs = {"prob": cur, "pred_class": cur.argmax(axis=1)}
        return coord.process(OutputBatch("s", f"{n}-{next(counter)}", 0, outputs))

    return one


def agent_latency(repeats: int) -> list[dict[str, Any]]:
    """Whole per-batch path of a coordinator (site scheme, tests ks + chi2)."""
    from medfleet.monitor.agent import Coordinator
    from medfleet.monitor.config import MonitorConfig
    from medfleet.monitor.store import MemoryStore, SQLiteStore

    rows = []
    rng = np.random.default_rng(1)
    ref = _probabilities(rng, REFERENCE_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        for store_name, store in (
            ("memory", MemoryStore()),
            ("sqlite", SQLiteStore(Path(tmp) / "bench.sqlite")),
        ):
            coord = Coordinator(MonitorConfig(scheme="site", tests=["ks", "chi2"]), store)
            coord.set_reference("s", {"prob": ref, "pred_class": ref.argmax(axis=1)})
            for n in (1000, 10000):
                one = _agent_step(coord, _probabilities(rng, n, 0.05), n)
                rows.append(
                    {
                        "n": n,
                        "tool": "medfleet",
                        "test": f"whole agent step, 4 columns ({store_name} store)",
                        "ms": _median_ms(one, repeats),
                    }
                )
            store.close()
    return rows


def quality(quick: bool, out: Path) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """Run the (default or quick) simulation; return its table, scenarios and seconds."""
    from medfleet.monitor.simulate import SimulationConfig, quick_config, run_simulation

    cfg = quick_config() if quick else SimulationConfig()
    start = time.perf_counter()
    result = run_simulation(cfg, out)
    return result.table(), result.streams.scenarios, time.perf_counter() - start


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def render(
    args: argparse.Namespace,
    lat: list[dict[str, Any]],
    frouros_note: str | None,
    table: list[dict[str, Any]],
    scenarios: dict[str, Any],
    seconds: float,
) -> str:
    from medfleet.monitor.simulate import SUMMARY_COLUMNS

    lines = ["# Drift monitoring benchmark", ""]
    command = "python benchmarks/drift.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines += [f"Command: `{command.strip()}`", ""]
    lines += [
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}; {frouros_note or 'frouros: not measured'}.",
        "",
    ]
    lines += [
        "## Per-batch latency",
        "",
        f"Reference {REFERENCE_SIZE} outputs x {COLUMNS} probability columns; median ms "
        f"over {args.repeats} runs.",
        "",
        "| batch | tool | test | ms |",
        "|---:|---|---|---:|",
    ]
    for r in lat:
        lines.append(f"| {r['n']} | {r['tool']} | {r['test']} | {r['ms']:.2f} |")
    lines.append("")
    lines += [
        "## Quality on the simulation",
        "",
        f"{'Quick' if args.quick else 'Default'} simulation, {seconds:.0f} s.",
        "",
        "| scheme | precision | recall | F1 | severity F1 | delay | missed | FA/100 | "
        "beats centralised |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in table:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in SUMMARY_COLUMNS) + " |")
    lines += ["", "Scenarios:", ""]
    for site, s in scenarios.items():
        if s.get("shift", "none") == "none":
            lines.append(f"- {site}: stable")
        else:
            lines.append(
                f"- {site}: {s['shift']} {s['severity']} {s['pattern']} from batch "
                f"{s['onset']} (magnitude {s['magnitude']:.3g}, effect {s['effect']:.3g})"
            )
    lines += ["", "## Targets", ""]
    for r in lat:
        if (
            r["n"] == 1000
            and r["tool"] == "medfleet"
            and r["test"].split(" ")[0] in ("ks", "wasserstein", "psi")
        ):
            ok = r["ms"] < TARGET_MS
            lines.append(
                f"- {r['test']} on 1k: {r['ms']:.2f} ms "
                f"({'meets' if ok else 'misses'} < {TARGET_MS} ms)"
            )
    rows = {r["scheme"]: r for r in table}
    if "adaptive" in rows:
        a = rows["adaptive"]
        lines.append(
            f"- adaptive detection F1 {a['f1']:.3f} "
            f"({'meets' if a['f1'] >= 0.8 else 'misses'} >= 0.80)"
        )
        sf = a["severity_f1"] or 0.0
        lines.append(
            f"- adaptive severity F1 {sf:.3f} ({'meets' if sf >= 0.85 else 'misses'} >= 0.85)"
        )
    if "centralised" in rows:
        for name, r in rows.items():
            if name != "centralised":
                lines.append(
                    f"- {name} {'beats' if r['beats_centralised'] else 'does NOT beat'} "
                    f"the centralised baseline (F1 {r['f1']:.3f} vs "
                    f"{rows['centralised']['f1']:.3f})"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="Timing repeats per case.")
    parser.add_argument("--quick", action="store_true", help="Quick simulation, fewer repeats.")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Folder for the simulation's files (default: a temporary folder).",
    )
    parser.add_argument("--md", type=Path, default=None, help="Write the results as Markdown.")
    parser.add_argument("--skip-quality", action="store_true", help="Latency only.")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 5)
    lat, note = latency(args.repeats)
    for r in lat:
        print(f"{r['n']:>6} {r['tool']:<9} {r['test']:<45} {r['ms']:8.2f} ms")
    print(note or "frouros: not measured")
    table: list[dict[str, Any]] = []
    scenarios: dict[str, Any] = {}
    seconds = 0.0
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or Path(tmp)
            table, scenarios, seconds = quality(args.quick, out)
        for r in table:
            print(r)
    text = render(args, lat, note, table, scenarios, seconds)
    if args.md:
        write_text_atomic(args.md, text)
        print(f"wrote {args.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
