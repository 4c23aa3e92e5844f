"""Sensitivity scores of one model on one task, measured once and read by every allocation.

SPT fills the per-matrix fields, IST the per-layer importance; a :class:`Sensitivity` from one
method leaves the other's fields empty. Matrices are named by place key (``"3.q"``, see
:func:`autopeft.space.structure.place_key`).

Sensitive counts follow the searched budget, so they are recorded on a fixed grid of fractions
τ (:data:`TAU_GRID`) and read at any fraction by :meth:`Sensitivity.sensitive_counts_at`:
linearly in log τ between grid points, proportionally to τ below the grid (a smaller top set is
a subset of the first one), and clamped to the last grid point above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

SensitivityMethod = Literal["spt", "ist"]

TAU_GRID: tuple[float, ...] = tuple(float(f"{t:.6g}") for t in np.geomspace(1e-5, 0.2, 24))
"""Fractions τ of all role-matrix weights at which SPT records sensitive counts (log-spaced)."""


@dataclass(frozen=True)
class Sensitivity:
    """What the allocator needs to know about a (model, task).

    Attributes:
        method: ``"spt"`` or ``"ist"``.
        matrix_scores: place key -> Σ over batches of (∂L/∂w)² summed over the matrix's weights
            (SPT; units of squared loss per squared weight).
        tau_grid: increasing fractions τ of ``total_weights`` at which counts were recorded.
        sensitive_counts: place key -> per τ of ``tau_grid``, how many of the matrix's weights are
            among the ``round(τ * total_weights)`` highest per-weight scores of all role matrices.
        total_weights: number of weights in all role matrices of the layout.
        layer_importance: per layer in layout order, the probe-loss increase (nats) when that
            layer's modules are suppressed, clipped at 0 plus a small floor (IST).
        seconds: wall time of the measurement.
    """

    method: SensitivityMethod
    matrix_scores: Mapping[str, float] = field(default_factory=dict)
    tau_grid: tuple[float, ...] = ()
    sensitive_counts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    total_weights: int = 0
    layer_importance: tuple[float, ...] = ()
    seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "matrix_scores", MappingProxyType(dict(self.matrix_scores)))
        object.__setattr__(
            self, "sensitive_counts", MappingProxyType({k: tuple(v) for k, v in self.sensitive_counts.items()})
        )
        object.__setattr__(self, "tau_grid", tuple(self.tau_grid))
        object.__setattr__(self, "layer_importance", tuple(self.layer_importance))
        if any(len(counts) != len(self.tau_grid) for counts in self.sensitive_counts.values()):
            raise ValueError("every matrix needs one sensitive count per τ of the grid")

    @property
    def has_matrix_scores(self) -> bool:
        return bool(self.matrix_scores) and bool(self.sensitive_counts)

    @cached_property
    def _count_table(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """(keys, log τ grid of shape (G,), counts of shape (M, G)) for vectorised lookups."""
        keys = tuple(self.sensitive_counts)
        table = np.array([self.sensitive_counts[k] for k in keys], dtype=np.float64).reshape(len(keys), -1)
        return keys, np.log(np.array(self.tau_grid)), table

    def sensitive_counts_at(self, fraction: float) -> dict[str, float]:
        """Place key -> (interpolated) number of its weights in the global top ``fraction``."""
        keys, log_grid, table = self._count_table
        if fraction <= 0 or not keys:
            return dict.fromkeys(keys, 0.0)
        log_fraction = np.log(fraction)
        if log_fraction <= log_grid[0]:
            column = table[:, 0] * fraction / self.tau_grid[0]
        elif log_fraction >= log_grid[-1]:
            column = table[:, -1]
        else:
            upper = int(np.searchsorted(log_grid, log_fraction))
            share = (log_fraction - log_grid[upper - 1]) / (log_grid[upper] - log_grid[upper - 1])
            column = (1 - share) * table[:, upper - 1] + share * table[:, upper]
        return dict(zip(keys, column.tolist()))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` inverts it exactly."""
        return {
            "method": self.method,
            "matrix_scores": dict(self.matrix_scores),
            "tau_grid": list(self.tau_grid),
            "sensitive_counts": {k: list(v) for k, v in self.sensitive_counts.items()},
            "total_weights": self.total_weights,
            "layer_importance": list(self.layer_importance),
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sensitivity:
        return cls(
            method=data["method"],
            matrix_scores={k: float(v) for k, v in data.get("matrix_scores", {}).items()},
            tau_grid=tuple(float(t) for t in data.get("tau_grid", ())),
            sensitive_counts={k: tuple(int(c) for c in v) for k, v in data.get("sensitive_counts", {}).items()},
            total_weights=int(data.get("total_weights", 0)),
            layer_importance=tuple(float(x) for x in data.get("layer_importance", ())),
            seconds=float(data.get("seconds", 0.0)),
        )
