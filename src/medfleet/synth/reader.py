"""Reader study: can experts tell synthetic images from real ones?

:func:`make_reader_kit` writes a shuffled set of real and synthetic images under neutral
names, a hidden key and a blank scoring sheet::

    OUT/images/img_0001.png ...   the shuffled set (all 8-bit PNG, same size)
    OUT/scoring_sheet.csv         image, reader, call (real|synthetic), confidence (1-5)
    OUT/key/key.csv               image, truth, source (keep away from the readers)
    OUT/kit.json                  counts, seed, sources

:func:`score_readers` reads the filled sheets and the key and reports, overall and per
reader: accuracy with a Wilson 95% interval and a two-sided binomial test against
chance (0.5), sensitivity for synthetic images, specificity for real ones, and mean
confidence of correct and wrong calls. Accuracy near 0.5 means readers could not tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.io import read_image, write_png
from medfleet.errors import MedfleetError
from medfleet.synth.pairs import image_to_unit, resize_image
from medfleet.tables import read_table, write_table
from medfleet.utils.atomic import write_json_atomic

CALLS = ("real", "synthetic")
SHEET_COLUMNS = ("image", "reader", "call", "confidence")


def _to_png_pixels(path: Path, size: int, channels: int) -> np.ndarray:
    unit = resize_image(image_to_unit(np.asarray(read_image(path).array), channels), size)
    pixels = np.clip(np.round(unit * 255), 0, 255).astype(np.uint8)
    return pixels[0] if channels == 1 else np.moveaxis(pixels, 0, -1)


def make_reader_kit(
    real: Sequence[str | Path],
    synthetic: Sequence[str | Path],
    out: str | Path,
    *,
    size: int,
    channels: int = 1,
    readers: Sequence[str] = ("reader1",),
    seed: int = 0,
) -> dict[str, Any]:
    """Write a shuffled real/synthetic image set, a hidden key and a scoring sheet.

    Real images are resized to the synthetic images' ``size`` so size gives nothing away.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for i in range(2):
        ...     _ = write_png(d / f"r{i}.png", np.full((8, 8), 10 * i, np.uint8))
        ...     _ = write_png(d / f"s{i}.png", np.full((8, 8), 200, np.uint8))
        >>> kit = make_reader_kit([d / "r0.png", d / "r1.png"], [d / "s0.png", d / "s1.png"],
        ...                       d / "kit", size=8)
        >>> kit["n_images"], (d / "kit" / "key" / "key.csv").is_file()
        (4, True)
    """
    if not real or not synthetic:
        raise MedfleetError("a reader kit needs real and synthetic images (fix: give both sets)")
    out = Path(out)
    items = [(Path(p), "real") for p in real] + [(Path(p), "synthetic") for p in synthetic]
    order = np.random.default_rng(seed).permutation(len(items))
    key_rows, sheet_rows = [], []
    for rank, index in enumerate(order.tolist(), start=1):
        source, truth = items[index]
        name = f"img_{rank:04d}.png"
        write_png(out / "images" / name, _to_png_pixels(source, size, channels))
        key_rows.append({"image": name, "truth": truth, "source": str(source)})
        for reader in readers:
            sheet_rows.append({"image": name, "reader": reader, "call": "", "confidence": ""})
    write_table(out / "key" / "key.csv", key_rows, ["image", "truth", "source"])
    write_table(out / "scoring_sheet.csv", sheet_rows, list(SHEET_COLUMNS))
    info = {
        "n_images": len(items),
        "n_real": len(real),
        "n_synthetic": len(synthetic),
        "readers": list(readers),
        "seed": seed,
        "instructions": "fill 'call' with real or synthetic and 'confidence' with 1 (guess) "
        "to 5 (certain); do not open key/",
    }
    write_json_atomic(out / "kit.json", info)
    return info


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    This is ``scipy.stats.binomtest(successes, n).proportion_ci(level, method="wilson")``
    with ``level = erf(z / sqrt(2))``, the two-sided coverage of ``z`` standard errors (the
    default ``z`` gives 95%); no trials gives NaN bounds.

    Args:
        successes: Number of successes (``0 <= successes <= n``).
        n: Number of trials.
        z: Half-width of the interval in standard errors.

    Returns:
        ``(low, high)``.

    Example:
        >>> [round(v, 4) for v in wilson_interval(5, 10)]
        [0.2366, 0.7634]
    """
    from scipy.stats import binomtest

    if n == 0:
        return math.nan, math.nan
    ci = binomtest(int(successes), int(n)).proportion_ci(
        confidence_level=math.erf(z / math.sqrt(2.0)), method="wilson"
    )
    return float(ci.low), float(ci.high)


def _stats(calls: list[dict[str, Any]]) -> dict[str, Any]:
    from scipy.stats import binomtest

    n = len(calls)
    correct = sum(c["correct"] for c in calls)
    syn = [c for c in calls if c["truth"] == "synthetic"]
    real = [c for c in calls if c["truth"] == "real"]
    conf_ok = [c["confidence"] for c in calls if c["correct"] and c["confidence"] is not None]
    conf_bad = [c["confidence"] for c in calls if not c["correct"] and c["confidence"] is not None]
    low, high = wilson_interval(correct, n)
    return {
        "n": n,
        "accuracy": correct / n if n else math.nan,
        "accuracy_low": low,
        "accuracy_high": high,
        "p_value_vs_chance": float(binomtest(correct, n, 0.5).pvalue) if n else math.nan,
        "sensitivity_synthetic": (sum(c["correct"] for c in syn) / len(syn) if syn else math.nan),
        "specificity_real": sum(c["correct"] for c in real) / len(real) if real else math.nan,
        "confidence_correct": float(np.mean(conf_ok)) if conf_ok else math.nan,
        "confidence_wrong": float(np.mean(conf_bad)) if conf_bad else math.nan,
    }


def score_readers(key: str | Path, sheets: Sequence[str | Path]) -> dict[str, Any]:
    r"""Score filled scoring sheets against the key.

    Returns:
        ``{"overall": stats, "readers": {reader: stats}, "unanswered": count}``.

    Raises:
        MedfleetError: A sheet names an image not in the key, or holds a call other than
            ``real``/``synthetic`` or a confidence outside 1-5 (file, line and fix named).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "key.csv").write_text("image,truth\na.png,real\nb.png,synthetic\n")
        >>> _ = (d / "s.csv").write_text(
        ...     "image,reader,call,confidence\na.png,r1,real,4\nb.png,r1,real,2\n")
        >>> score_readers(d / "key.csv", [d / "s.csv"])["overall"]["accuracy"]
        0.5
    """
    truth = {r["image"]: r["truth"] for r in read_table(key)}
    calls: list[dict[str, Any]] = []
    unanswered = 0
    for sheet in sheets:
        for line, row in enumerate(read_table(sheet), start=2):
            image = row.get("image", "")
            where = f"{sheet} line {line} (image {image!r})"
            if image not in truth:
                raise MedfleetError(f"{where}: image not in the key {key} (fix: check the name)")
            call = (row.get("call") or "").strip().lower()
            if not call:
                unanswered += 1
                continue
            if call not in CALLS:
                raise MedfleetError(f"{where}: call {call!r} (fix: write real or synthetic)")
            conf_text = (row.get("confidence") or "").strip()
            confidence = None
            if conf_text:
                try:
                    confidence = float(conf_text)
                except ValueError:
                    confidence = -1.0
                if not 1 <= confidence <= 5:
                    raise MedfleetError(
                        f"{where}: confidence {conf_text!r} (fix: a number from 1 to 5)"
                    )
            calls.append(
                {
                    "reader": row.get("reader") or Path(sheet).stem,
                    "truth": truth[image],
                    "correct": call == truth[image],
                    "confidence": confidence,
                }
            )
    if not calls:
        raise MedfleetError("no answered calls in the sheets (fix: fill the 'call' column)")
    readers = sorted({c["reader"] for c in calls})
    return {
        "overall": _stats(calls),
        "readers": {r: _stats([c for c in calls if c["reader"] == r]) for r in readers},
        "unanswered": unanswered,
    }
