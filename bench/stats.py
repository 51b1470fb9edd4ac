"""Summaries of latency samples shared by the benchmarks: nearest-rank percentiles."""

from collections.abc import Sequence

# name -> the exact fraction (numerator, denominator) of samples at or below it
PERCENTILES = {"p50": (50, 100), "p90": (90, 100), "p99": (99, 100), "p999": (999, 1000)}
CURVE_POINTS = (0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100)  # for plots


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9 and max by nearest rank; zeros when there are no samples."""
    ordered = sorted(samples)
    if not ordered:
        return {name: 0.0 for name in (*PERCENTILES, "max")}
    summary = {name: round(rank(ordered, num, den), 1) for name, (num, den) in PERCENTILES.items()}
    summary["max"] = round(ordered[-1], 1)
    return summary


def rank(ordered: Sequence[float], num: int, den: int) -> float:
    """Nearest rank: the smallest sample with at least num/den of the samples at or below."""
    return ordered[max(1, -(-len(ordered) * num // den)) - 1]


def curve(samples: Sequence[float]) -> list[tuple[float, float]]:
    """(percentile, value) pairs at `CURVE_POINTS`: the latency percentile curve."""
    ordered = sorted(samples)
    if not ordered:
        return []
    return [(percent, rank(ordered, round(percent * 1000), 100_000)) for percent in CURVE_POINTS]
