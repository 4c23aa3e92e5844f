"""Multi-objective successive halving: promoting Pareto-ranked configs to longer fine-tunes.

Rung k trains with ``eta ** k`` times the base steps and training examples. Whenever a trial
finishes at rung k, its rung's completed trials are ranked by non-dominated sorting (level 0 is
the Pareto front, level 1 the front of the rest, ...; ties within a level broken by the first
objective) and the best ``floor(n / eta)`` that were not promoted yet go to rung k + 1 — an
asynchronous successive halving on Pareto rank in the spirit of MO-ASHA (Schmucker et al. 2021).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from botorch.utils.multi_objective.pareto import is_non_dominated

from autopeft.objectives import Objective, maximisation_values, observed
from autopeft.store import TrialRecord
from autopeft.trials import Fidelity


@dataclass(frozen=True)
class Rungs:
    """``count`` fidelity levels, each ``eta`` times the previous (1 = no promotion)."""

    count: int = 1
    eta: float = 3.0

    def fidelity(self, base: Fidelity, rung: int) -> Fidelity:
        factor = self.eta**rung
        return replace(
            base, steps=round(base.steps * factor), train_examples=round(base.train_examples * factor)
        )

    def cost(self, rung: int) -> float:
        return self.eta**rung

    @property
    def top(self) -> int:
        return self.count - 1


def pareto_levels(values: torch.Tensor) -> list[int]:
    """Non-dominated sorting level of each row of ``values`` (n, m), maximised; 0 = Pareto front."""
    levels = [-1] * values.shape[0]
    remaining = list(range(values.shape[0]))
    level = 0
    while remaining:
        front = is_non_dominated(values[remaining], deduplicate=False).tolist()
        for index, on_front in zip(list(remaining), front):
            if on_front:
                levels[index] = level
        remaining = [i for i, on_front in zip(remaining, front) if not on_front]
        level += 1
    return levels


def promotable(
    rung_trials: Sequence[TrialRecord], promoted: set[int], objectives: Sequence[Objective], eta: float
) -> list[TrialRecord]:
    """Trials of one rung that now rank in its top ``1/eta`` and were not promoted yet."""
    candidates = observed(rung_trials, objectives)
    quota = math.floor(len(candidates) / eta)
    if quota == 0:
        return []
    values = maximisation_values(candidates, objectives)
    levels = pareto_levels(values)
    order = sorted(range(len(candidates)), key=lambda i: (levels[i], -float(values[i, 0])))
    return [candidates[i] for i in order[:quota] if candidates[i].id not in promoted]
