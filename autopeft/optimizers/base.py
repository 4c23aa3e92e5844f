"""The optimizer contract: ``ask`` for points to evaluate, ``tell`` what was observed.

Every optimizer (random/Sobol, BoTorch MOBO, Optuna samplers) implements :class:`Optimizer` and
passes the reusable contract test in ``tests/optimizers/contract.py``:

- ``ask(n, pending)`` returns ``n`` feasible points of the space (fewer only when the space has
  no more), none of which decodes to the same structure as another returned point, a pending
  point, or any point asked or told before — so asynchronous workers never train duplicates and
  a failed structure is never proposed again;
- ``tell(observations)`` accepts observations of any points of the space, including ones it did
  not propose (warm starts, resumed jobs), and failed ones (which carry no values);
- the same seed and the same calls give the same points.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autopeft.objectives import Objective
from autopeft.space import Point, SearchSpace


@dataclass(frozen=True)
class Observation:
    """A finished evaluation: the point, its objective values unless it failed, and the
    fidelity rung it ran at (0 = the base proxy; promoted configs are observed again higher)."""

    point: Point
    values: Mapping[str, float] = field(default_factory=dict)
    failed: bool = False
    rung: int = 0
    replicates: int = 1
    """Runs averaged into ``values`` (:meth:`Optimizer.model_observations` sets it)."""


class Optimizer(ABC):
    """Proposes points of ``space`` for the given ``objectives``."""

    name: str = ""

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int = 0) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.seed = seed
        self.observations: list[Observation] = []
        self._seen: set[str] = set()

    @abstractmethod
    def _propose(self, n: int, excluded: set[str]) -> list[Point]:
        """Up to ``n`` feasible points whose structure keys are not in ``excluded`` nor repeated."""

    def ask(self, n: int, pending: Sequence[Point] = ()) -> list[Point]:
        """``n`` new points to evaluate while the ``pending`` ones are still running."""
        if n <= 0:
            return []
        excluded = self._seen | {self.space.structure_key(p) for p in pending}
        points = self._propose(n, excluded)
        self._seen.update(self.space.structure_key(p) for p in points)
        return points

    def tell(self, observations: Sequence[Observation]) -> None:
        for observation in observations:
            self.observations.append(observation)
            self._seen.add(self.space.structure_key(observation.point))
        self._observe(observations)

    def model_observations(self) -> list[Observation]:
        """What a surrogate model should learn from: one observation per structure.

        A structure promoted to longer fine-tunes is observed once per rung; its highest rung is
        the best-known estimate of its value, so only that rung is kept — observations of
        different fidelities are never pooled as if they were repeats of one measurement.
        Replicates at that rung (other training seeds) are averaged, ``replicates`` counting
        them; values that are not finite (a diverged metric) are left out.
        """
        return [self._mean_of(group) for group in self.replicate_groups().values()]

    def replicate_groups(self) -> dict[str, list[Observation]]:
        """Structure key -> the observations at its highest observed rung (failed ones last)."""
        groups: dict[str, list[Observation]] = {}
        for observation in self.observations:
            key = self.space.structure_key(observation.point)
            kept = groups.setdefault(key, [])
            if kept and observation.rung > kept[0].rung:
                kept.clear()
            if not kept or observation.rung == kept[0].rung:
                kept.append(observation)
        return {key: sorted(group, key=lambda o: o.failed) for key, group in groups.items()}

    @staticmethod
    def _mean_of(group: Sequence[Observation]) -> Observation:
        succeeded = [o for o in group if not o.failed]
        if not succeeded:
            return group[-1]
        names = set.intersection(*(set(o.values) for o in succeeded))
        values = {}
        for name in names:
            finite = [float(o.values[name]) for o in succeeded if math.isfinite(float(o.values[name]))]
            if finite:
                values[name] = statistics.fmean(finite)
        return Observation(succeeded[0].point, values, rung=succeeded[0].rung, replicates=len(succeeded))

    def _observe(self, observations: Sequence[Observation]) -> None:
        """Hook for model-based optimizers; called after the observations are recorded."""
