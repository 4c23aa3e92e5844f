"""Objective values as the axes the optimizers and the hypervolume see.

Every axis is *maximised*. An objective's axis value is::

    sign * transform(value)     sign = +1 for goal "max", -1 for goal "min"
                                transform = log10 for costs spanning decades, identity otherwise

so ``accuracy`` (max) stays a fraction and ``trainable_params`` (min) becomes ``-log10(params)``:
halving the parameter count gains 0.30 on its axis whatever the model size. Hypervolumes are
therefore in units of (metric) x (decades of cost).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from autopeft.objectives import Objective

LOG_SCALED = frozenset({"trainable_params", "peak_memory_bytes", "step_time_s", "wall_time_s"})
"""Costs that span orders of magnitude; their axis is log10 of the value."""

CLOSED_FORM = frozenset({"trainable_params"})
"""Objectives the search space computes exactly (``space.trainable_params``): never learned."""


def to_axis(objective: Objective, value: float) -> float:
    """An objective value on its maximised axis."""
    if objective.name in LOG_SCALED:
        if value <= 0:
            raise ValueError(f"{objective.name} must be positive to be put on a log10 axis, got {value}")
        value = math.log10(value)
    return value if objective.goal == "max" else -value


def from_axis(objective: Objective, coordinate: float) -> float:
    """Inverse of :func:`to_axis`: an axis coordinate back in the objective's own units."""
    value = coordinate if objective.goal == "max" else -coordinate
    return 10.0**value if objective.name in LOG_SCALED else value


def axis_matrix(values: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> torch.Tensor:
    """Observed values of shape (n, m), float64, one column per objective in order, maximised."""
    rows = [[to_axis(o, float(v[o.name])) for o in objectives] for v in values]
    return torch.tensor(rows, dtype=torch.double).reshape(len(rows), len(objectives))
