"""Hypervolume of observed objective values, and the rule that places the reference point.

Both work on the maximised axes of :mod:`autopeft.optimizers.axes` (costs in log10), while the
reference point travels in the objectives' own units (``{"accuracy": 0.52, "trainable_params":
2.9e6}``) so that a scheduler can store it next to the trials it measures. The hypervolume's unit
is the product of the axes' units, e.g. accuracy x decades of trainable parameters.

Reference-point rule (:func:`reference_point`): take the Pareto front of the observations on the
axes, its nadir (worst value per axis) and its range (best minus worst per axis), and step
``scale`` (default 10%) of the range beyond the nadir — botorch's ``infer_reference_point``
(Ishibuchi et al. 2011 found 0.1 robust). A single front point steps 10% of its own magnitude.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated

from autopeft.objectives import Objective
from autopeft.optimizers.axes import axis_matrix, from_axis, to_axis

REFERENCE_SCALE = 0.1


def reference_axes(reference: Mapping[str, float], objectives: Sequence[Objective]) -> torch.Tensor:
    """A reference point in objective units -> its axis coordinates, shape (m,)."""
    return torch.tensor([to_axis(o, reference[o.name]) for o in objectives], dtype=torch.double)


def reference_point(
    values: Sequence[Mapping[str, float]], objectives: Sequence[Objective], scale: float = REFERENCE_SCALE
) -> dict[str, float]:
    """The reference point (objective units) for observed ``values``; see the module docstring."""
    if not values:
        raise ValueError("a reference point needs at least one observation")
    axes = axis_matrix(values, objectives)
    front = axes[is_non_dominated(axes)]
    coordinates = infer_reference_point(front, scale=scale)
    return {o.name: from_axis(o, float(c)) for o, c in zip(objectives, coordinates)}


def hypervolume(
    values: Sequence[Mapping[str, float]], objectives: Sequence[Objective], reference: Mapping[str, float]
) -> float:
    """Volume dominated by ``values`` and bounded by ``reference``, on the maximised axes.

    Points that do not dominate the reference point add nothing; no values give 0.
    """
    ref = reference_axes(reference, objectives)
    if not values:
        return 0.0
    partitioning = DominatedPartitioning(ref_point=ref, Y=axis_matrix(values, objectives))
    return float(partitioning.compute_hypervolume())
