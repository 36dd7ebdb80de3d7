"""Side-by-side timing for the benchmarks: interleaved repeats, medians and spreads.

Every ratio a benchmark prints is measured here with both sides in one process, their repeats
interleaved (A B, B A, A B ...) so that a change of machine load hits both sides alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def summary(values: list[float], digits: int = 3) -> dict[str, object]:
    """``{"median", "min", "max", "runs"}`` of repeated measurements (the spread is min..max)."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": [round(v, digits) for v in values]}


def interleaved(sides: dict[str, Callable[[], object]], repeats: int, calls: int = 1,
                warmup: int = 1, clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds per call of each side: ``repeats`` rounds, each timing ``calls`` calls per side;
    the order of the sides alternates from round to round. ``warmup`` untimed calls each first.
    ``clock`` is wall time by default; ``time.process_time`` gives the CPU seconds of this process
    (all its threads), which a busy machine disturbs less at one thread."""
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    names = list(sides)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = sides[name]
            start = clock()
            for _ in range(calls):
                fn()
            seconds[name].append((clock() - start) / calls)
    return seconds


def rate_summary(seconds: list[float], per_call: float, digits: int = 2) -> dict[str, object]:
    """Rates ``per_call / seconds`` (e.g. samples/s) as a :func:`summary`."""
    return summary([per_call / s for s in seconds], digits)


def ratio(numerator: dict[str, object], denominator: dict[str, object], digits: int = 3) -> float:
    """Ratio of two :func:`summary` medians (the figure a table prints)."""
    return round(float(numerator["median"]) / float(denominator["median"]), digits)


def _cell(value: object) -> str:
    if isinstance(value, dict) and "median" in value:
        return f"{value['median']:g} [{value['min']:g}-{value['max']:g}]"
    return "-" if value is None else f"{value:g}" if isinstance(value, float | int) else str(value)


def format_table(rows: list[dict[str, object]]) -> str:
    """Plain-text table of ``{"figure", "unit", "reference", "medcl", "ratio"}`` rows; a measured
    :func:`summary` prints as ``median [min-max]``."""
    header = ["figure", "unit", "reference", "medcl", "ratio"]
    cells = [header] + [[_cell(r.get(k)) for k in header] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
