"""The compact LoRA space of the MiniLM/SST-2 lookup benchmark.

Six dimensions, 256 grid points, 196 of them feasible (the rest add no module)::

    group.bottom / group.middle / group.top   Flag: LoRA in layers 0-1 / 2-3 / 4-5
    rank                                      Choice: 1, 4, 16, 64 (every module)
    attention                                 Categorical: none, qv, ko, qkvo
    ffn                                       Flag: LoRA on intermediate.dense and output.dense

Placement is deliberately coarse but present (the design's measured facts: top layers beat bottom
layers by ~6 points at equal cost). Every point is translated into a point of a real
:class:`~autopeft.space.SearchSpace` (per-layer mask, role switches, one global rank) on MiniLM, so
structures, structure keys and exact trainable-parameter counts are the product's own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

from autopeft.errors import SpaceError
from autopeft.space import Point, SearchSpace, Structure, parse_space
from autopeft.space.dimensions import Categorical, Choice, Dimension, DimensionVectors, Flag, Value
from autopeft.space.search_space import bind_space

INNER_SPACE = """
name: grouped-lora-inner
layers: {mask: true}
modules:
  lora:
    roles: [q, k, v, o, up, down]
    search_roles: true
    rank: {choices: [1, 4, 16, 64], per: global}
"""

LAYER_GROUPS = {"bottom": (0, 1), "middle": (2, 3), "top": (4, 5)}
ATTENTION_ROLES = {"none": (), "qv": ("q", "v"), "ko": ("k", "o"), "qkvo": ("q", "k", "v", "o")}
FFN_ROLES = ("up", "down")

DIMENSIONS: tuple[Dimension, ...] = (
    *(Flag(f"group.{group}") for group in LAYER_GROUPS),
    Choice("rank", (1, 4, 16, 64)),
    Categorical("attention", tuple(ATTENTION_ROLES)),
    Flag("ffn"),
)


class GroupedLoraSpace(DimensionVectors):
    """A SearchSpace-like view (same methods the optimizers use) over a real 6-layer BERT space."""

    def __init__(self, model) -> None:
        self.inner: SearchSpace = bind_space(parse_space(INNER_SPACE), model)
        if self.inner.layers != tuple(range(6)):
            raise SpaceError("the grouped LoRA space expects a 6-layer model (MiniLM)")
        self.dimensions = DIMENSIONS
        self.space_name = "grouped-lora"

    def inner_point(self, point: Mapping[str, Value]) -> Point:
        """The equivalent point of the real per-layer space."""
        self.check_point(point)
        layers = {
            f"layers.L{layer}": bool(point[f"group.{group}"])
            for group, members in LAYER_GROUPS.items()
            for layer in members
        }
        on = set(ATTENTION_ROLES[str(point["attention"])]) | (set(FFN_ROLES) if point["ffn"] else set())
        roles = {f"lora.role.{role}": role in on for role in self.inner.lora_roles}
        return {**layers, **roles, "lora.rank": point["rank"]}

    def decode(self, point: Mapping[str, Value]) -> Structure:
        return self.inner.decode(self.inner_point(point))

    def trainable_params(self, point: Mapping[str, Value]) -> int:
        return self.inner.trainable_params(self.inner_point(point))

    def is_feasible(self, point: Mapping[str, Value]) -> bool:
        return self.inner.is_feasible(self.inner_point(point))

    def structure_key(self, point: Mapping[str, Value]) -> str:
        return self.inner.structure_key(self.inner_point(point))

    def all_points(self) -> Iterator[Point]:
        """Every feasible point, in grid order."""
        grids = [(False, True) if isinstance(d, Flag) else d.values for d in self.dimensions]
        for values in itertools.product(*grids):
            point = dict(zip(self.names, values))
            if self.is_feasible(point):
                yield point


def config_id(point: Mapping[str, Value]) -> str:
    """A short, readable, unique name of a grouped point, e.g. ``middle+top/r16/qv+ffn``."""
    groups = "+".join(group for group in LAYER_GROUPS if point[f"group.{group}"])
    roles = [str(point["attention"])] if point["attention"] != "none" else []
    roles += ["ffn"] if point["ffn"] else []
    return f"{groups}/r{point['rank']}/{'+'.join(roles)}"
