"""What the seeded dev-score benchmarks (``lora_inits``, ``sparse_rules``, ``methods_table``) share when
they report: paired intervals, round-robin timing ratios, the raw rows as CSV, and the line that says
where and when they ran."""

from __future__ import annotations

import csv
import os
import platform
import statistics
from collections.abc import Callable, Hashable
from datetime import date
from pathlib import Path

from scipy import stats


def paired_interval(diffs: list[float]) -> str:
    """Mean of paired differences with its 95% t-interval, ``+0.0100 [-0.0020, +0.0220]``; n/a below 2."""
    if len(diffs) < 2:
        return "n/a"
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    mean = statistics.mean(diffs)
    return f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"


def round_robin_ratios(timings: list[dict], column: str, arm: Callable[[dict], Hashable],
                       reference: Callable[[Hashable], Hashable]) -> dict[Hashable, float]:
    """arm -> median over timing rounds of its ``column`` over its reference arm's in the same round.

    One process times every arm in turn, round after round; a round slowed by the machine slows
    every arm in it, so only in-round ratios are compared. ``arm(row)`` names a row's arm and
    ``reference(arm)`` the arm it is divided by.
    """
    value = {(row["round"], arm(row)): float(row[column]) for row in timings}
    ratios: dict[Hashable, list[float]] = {}
    for (round_, name), measured in value.items():
        base = value.get((round_, reference(name)))
        if base:
            ratios.setdefault(name, []).append(measured / base)
    return {name: statistics.median(values) for name, values in ratios.items()}


def write_rows(rows: list[dict], path: Path) -> None:
    """The raw rows as CSV (columns from the first row), replacing ``path``."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def machine_line(threads: int) -> str:
    """Processor, cores, torch threads, the load average now and today's date."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {threads} torch "
            f"threads, no GPU; load average at the end {load}; date {date.today()}.")
