"""The searched dimensions of a space and their numeric encoding.

A *point* maps dimension names to values (``{"lora.rank.L0": 8, "lora.variant": "dora"}``).
Optimizers see a point as a float vector ``x`` of shape ``(d,)`` with one coordinate per
dimension, in the order of :attr:`SearchSpace.dimensions`:

=============  ==========================  ======================================
dimension      coordinate                  bounds
=============  ==========================  ======================================
Choice         index into ``values``        ``[0, len(values) - 1]``, integer
Categorical    index into ``values``        ``[0, len(values) - 1]``, unordered
Flag           0 (off) or 1 (on)            ``[0, 1]``, integer
Real           value, or log10(value)       ``[low, high]`` (log10 bounds if ``log``)
=============  ==========================  ======================================

``from_unit(u)`` maps ``u`` in [0, 1) to a value with equal probability per choice, which is how
space-filling designs (Sobol) sample a space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

from autopeft.errors import SpaceError

Value = Union[int, float, str, bool]


@dataclass(frozen=True)
class Choice:
    """An ordered set of numbers (ranks, sizes); neighbours are similar."""

    name: str
    values: tuple[int | float, ...]

    @property
    def bounds(self) -> tuple[float, float]:
        return 0.0, float(len(self.values) - 1)

    def encode(self, value: Value) -> float:
        return float(self.values.index(value))

    def decode(self, coordinate: float) -> Value:
        return self.values[_clamped_index(coordinate, len(self.values))]

    def from_unit(self, u: float) -> Value:
        return self.values[_unit_index(u, len(self.values))]


@dataclass(frozen=True)
class Categorical:
    """Unordered options (a LoRA variant, an allocation rule)."""

    name: str
    values: tuple[str, ...]

    @property
    def bounds(self) -> tuple[float, float]:
        return 0.0, float(len(self.values) - 1)

    def encode(self, value: Value) -> float:
        return float(self.values.index(value))

    def decode(self, coordinate: float) -> Value:
        return self.values[_clamped_index(coordinate, len(self.values))]

    def from_unit(self, u: float) -> Value:
        return self.values[_unit_index(u, len(self.values))]


@dataclass(frozen=True)
class Flag:
    """A module, role or layer switched on or off."""

    name: str

    @property
    def bounds(self) -> tuple[float, float]:
        return 0.0, 1.0

    def encode(self, value: Value) -> float:
        return 1.0 if value else 0.0

    def decode(self, coordinate: float) -> Value:
        return coordinate >= 0.5

    def from_unit(self, u: float) -> Value:
        return u >= 0.5


@dataclass(frozen=True)
class Real:
    """A continuous setting, searched on a log10 scale when ``log``."""

    name: str
    low: float
    high: float
    log: bool = False

    @property
    def bounds(self) -> tuple[float, float]:
        return (math.log10(self.low), math.log10(self.high)) if self.log else (self.low, self.high)

    def encode(self, value: Value) -> float:
        return math.log10(float(value)) if self.log else float(value)

    def decode(self, coordinate: float) -> Value:
        low, high = self.bounds
        clipped = min(max(float(coordinate), low), high)
        return 10.0**clipped if self.log else clipped

    def from_unit(self, u: float) -> Value:
        low, high = self.bounds
        return self.decode(low + float(u) * (high - low))


Dimension = Union[Choice, Categorical, Flag, Real]


def _unit_index(u: float, size: int) -> int:
    """Equal-width bins of the unit interval, one per value."""
    return min(int(float(u) * size), size - 1)


def _clamped_index(coordinate: float, size: int) -> int:
    return min(max(int(round(float(coordinate))), 0), size - 1)


Point = dict[str, Value]


class DimensionVectors:
    """Points <-> vectors over ``self.dimensions``: the part of a space every optimizer uses.

    :class:`~autopeft.space.SearchSpace` and the benchmarks' model-free spaces share it; a
    subclass sets ``dimensions`` and ``space_name`` (named in errors).
    """

    dimensions: tuple[Dimension, ...]
    space_name: str
    conditions: Mapping[str, tuple[str, tuple[Value, ...]]] = {}
    """Conditional dimensions: name -> (parent dimension, the parent's values under which it acts),
    e.g. ``{"method.lora.size": ("method", ("lora",))}``. A dimension not listed always acts."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def is_active(self, name: str, point: Mapping[str, Value]) -> bool:
        """Whether dimension ``name`` acts on ``point`` (a parent that is not searched never silences it)."""
        parent, values = self.conditions.get(name, (None, ()))
        return parent is None or parent not in point or point[parent] in values

    def canonical(self, point: Mapping[str, Value]) -> Point:
        """``point`` with every inactive dimension at its first value, so that two points that
        decode to the same structure encode to the same vector and a surrogate never sees
        variation in a knob that did nothing."""
        first = {d.name: d.from_unit(0.0) for d in self.dimensions if d.name in self.conditions}
        return {name: value if self.is_active(name, point) else first[name] for name, value in point.items()}

    @property
    def bounds(self) -> list[tuple[float, float]]:
        """Per-coordinate (low, high) of the encoded vector, in dimension order."""
        return [d.bounds for d in self.dimensions]

    def encode(self, point: Mapping[str, Value]) -> list[float]:
        """Point -> vector of shape (d,), inactive dimensions at their first value (:meth:`canonical`)."""
        self.check_point(point)
        point = self.canonical(point)
        return [d.encode(point[d.name]) for d in self.dimensions]

    def to_point(self, vector: Sequence[float]) -> Point:
        """Vector of shape (d,) -> point; coordinates are rounded and clipped to their bounds."""
        if len(vector) != len(self.dimensions):
            raise ValueError(f"expected a vector of {len(self.dimensions)} coordinates, got {len(vector)}")
        return {d.name: d.decode(x) for d, x in zip(self.dimensions, vector)}

    def from_unit(self, u: Sequence[float]) -> Point:
        """A point from a vector of shape (d,) in the unit cube (e.g. one Sobol draw)."""
        return {d.name: d.from_unit(x) for d, x in zip(self.dimensions, u, strict=True)}

    def check_point(self, point: Mapping[str, Value]) -> None:
        """Raise SpaceError unless ``point`` sets exactly this space's dimensions to legal values."""
        expected, given = set(self.names), set(point)
        if expected != given:
            missing, extra = sorted(expected - given), sorted(given - expected)
            raise SpaceError(f"config does not fit space '{self.space_name}': missing {missing}, unknown {extra}")
        for dim in self.dimensions:
            value = point[dim.name]
            if isinstance(dim, (Choice, Categorical)) and value not in dim.values:
                raise SpaceError(f"config: {dim.name}={value!r} is not one of {list(dim.values)}")
