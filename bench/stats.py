"""Small numeric helpers."""

from __future__ import annotations

import math


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 2)


# The points of a wrk run's distribution (bench/wrk.lua): percentiles 1..99, 99.5, 99.9.
PCT_POINTS = [*range(1, 100), 99.5, 99.9]


def merged_percentiles(runs: list[tuple[int, list[float]]], pcts: tuple[float, ...]
                       ) -> list[float]:
    """Percentiles of several runs together, each run given as (requests, its
    distribution at PCT_POINTS): each point stands for the requests between it and
    the previous one (an approximation as fine as the points)."""
    samples: list[tuple[float, float]] = []
    for requests, points in runs:
        previous = 0.0
        for q, value in zip(PCT_POINTS, points, strict=True):
            samples.append((value, requests * (q - previous) / 100))
            previous = q
        samples.append((points[-1], requests * (100 - previous) / 100))
    samples.sort()
    total = sum(w for _, w in samples)
    out = []
    for pct in pcts:
        target, running = total * pct / 100, 0.0
        value = samples[-1][0] if samples else 0.0
        for v, w in samples:
            running += w
            if running >= target:
                value = v
                break
        out.append(value)
    return out
