"""Quasi-random search: scrambled Sobol draws mapped onto the space, infeasible ones rejected."""

from __future__ import annotations

from torch.quasirandom import SobolEngine

from autopeft.optimizers.base import Optimizer
from autopeft.space import Point

MAX_DRAWS_PER_POINT = 2000


class RandomSearch(Optimizer):
    """Space-filling random search; ignores observations (the baseline every optimizer must beat)."""

    name = "random"

    def __init__(self, space, objectives, seed: int = 0) -> None:
        super().__init__(space, objectives, seed)
        self._sobol = SobolEngine(len(space.dimensions), scramble=True, seed=seed)

    def _propose(self, n: int, excluded: set[str]) -> list[Point]:
        points: list[Point] = []
        keys = set(excluded)
        for _ in range(MAX_DRAWS_PER_POINT * n):
            if len(points) == n:
                break
            point = self.space.from_unit(self._sobol.draw(1)[0].tolist())
            key = self.space.structure_key(point)
            if key not in keys and self.space.is_feasible(point):
                points.append(point)
                keys.add(key)
        return points
