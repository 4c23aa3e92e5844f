"""Synthetic SPT sensitivities for a layout, consistent the way measured ones are.

Each matrix m gets a sensitivity level s_m (log-normal) and per-weight scores that are s_m times
an Exp(1) draw, so n_m * exp(-t / s_m) of its weights exceed a threshold t. For every τ of the
grid the global threshold solves Σ_m n_m exp(-t / s_m) = τ N, which makes the counts monotone in τ
and add up to τ N, as real ones do.
"""

from __future__ import annotations

import math
import random

from autopeft.space.sensitivity import TAU_GRID, Sensitivity
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import place_key


def synthetic_sensitivity(layout: ModelLayout, seed: int, spread: float = 2.0) -> Sensitivity:
    rng = random.Random(seed)
    sizes = {
        place_key((layer.index, role)): shape.numel
        for layer in layout.layers
        for role, shape in layer.matrices.items()
    }
    levels = {key: rng.lognormvariate(0.0, spread) for key in sizes}
    total = sum(sizes.values())
    counts = {key: [] for key in sizes}
    for tau in TAU_GRID:
        threshold = _threshold(sizes, levels, tau * total)
        for key, size in sizes.items():
            counts[key].append(int(size * math.exp(-threshold / levels[key])))
    return Sensitivity(
        method="spt",
        matrix_scores={key: sizes[key] * levels[key] for key in sizes},
        tau_grid=TAU_GRID,
        sensitive_counts=counts,
        total_weights=total,
        layer_importance=tuple(rng.lognormvariate(0.0, spread) for _ in layout.layers),
    )


def _threshold(sizes: dict[str, int], levels: dict[str, float], wanted: float) -> float:
    def above(t: float) -> float:
        return sum(n * math.exp(-t / levels[key]) for key, n in sizes.items())

    low, high = 0.0, 1.0
    while above(high) > wanted:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if above(middle) > wanted else (low, middle)
    return high
