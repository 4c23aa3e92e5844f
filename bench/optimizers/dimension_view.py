"""The vector side of the SearchSpace interface, for benchmark spaces that are not bound to a model."""

from __future__ import annotations

from collections.abc import Sequence

from autopeft.space import Point
from autopeft.space.dimensions import Dimension


class DimensionView:
    """``names``, ``bounds``, ``to_point`` and ``from_unit`` over ``self.dimensions``."""

    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    @property
    def bounds(self) -> list[tuple[float, float]]:
        return [d.bounds for d in self.dimensions]

    def to_point(self, vector: Sequence[float]) -> Point:
        return {d.name: d.decode(x) for d, x in zip(self.dimensions, vector, strict=True)}

    def from_unit(self, u: Sequence[float]) -> Point:
        return {d.name: d.from_unit(x) for d, x in zip(self.dimensions, u, strict=True)}
