"""Compact grouped spaces for the lookup benchmarks: small enough to train every point once.

MiniLM's 6 layers come in 3 groups of 2 (``group.bottom`` / ``group.middle`` / ``group.top``:
layers 0-1 / 2-3 / 4-5), each switched on or off; the other dimensions size the modules. Every
point is translated into a point of a real :class:`~autopeft.space.SearchSpace` on MiniLM, so
structures, structure keys and exact trainable-parameter counts are the product's own.

``lora`` (the table MiniLM/SST-2 optimizer defaults were chosen on), 196 feasible points::

    rank        Choice: 1, 4, 16, 64 (every LoRA module)
    attention   Categorical: none, qv, ko, qkvo
    ffn         Flag: LoRA on intermediate.dense and output.dense

``adapters`` (the AutoPEFT paper's module types; a second table no default was tuned on),
182 feasible points::

    serial      Choice: 0, 8, 64 (bottleneck of a serial adapter after each FFN; 0 = none)
    parallel    Choice: 0, 8, 64 (bottleneck of a parallel adapter beside each FFN)
    prefix      Choice: 0, 8, 64 (learned key/value prefix length per attention layer)

``methods`` (peft's methods as one conditional choice; a table for issue 13's optimizer comparison),
147 feasible points::

    method      Categorical: lora, dora, loha, lokr, oft, fourierft, c3a, miss, gralora,
                ia3, ln_tuning, bias (each on q, k, v, o, up, down of the chosen layers)
    method.<m>.size  Choice of two sizes per sized method; active only when ``method`` is m

Placement is deliberately coarse but present (measured on SST-2: top layers beat bottom layers by
about 6 points at equal cost).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

from autopeft.errors import SpaceError
from autopeft.space import Point, SearchSpace, Structure, parse_space
from autopeft.space.dimensions import Categorical, Choice, Dimension, DimensionVectors, Flag, Value
from autopeft.space.search_space import bind_space

LAYER_GROUPS = {"bottom": (0, 1), "middle": (2, 3), "top": (4, 5)}
GROUP_FLAGS = tuple(Flag(f"group.{group}") for group in LAYER_GROUPS)


class GroupedSpace(DimensionVectors):
    """A SearchSpace-like view (the methods the optimizers use) over a real 6-layer MiniLM space.

    A subclass sets ``inner_yaml`` (the real space, with a per-layer mask), ``dimensions`` (the
    group flags first), ``space_name``, and translates its own dimensions in ``module_point``.
    """

    inner_yaml: str

    def __init__(self, model) -> None:
        self.inner: SearchSpace = bind_space(parse_space(self.inner_yaml), model)
        if self.inner.layers != tuple(range(6)):
            raise SpaceError(f"the {self.space_name} space expects a 6-layer model (MiniLM)")

    def module_point(self, point: Mapping[str, Value]) -> Point:
        """The inner space's values for every dimension except the layer mask."""
        raise NotImplementedError

    def module_label(self, point: Mapping[str, Value]) -> str:
        """The part of :meth:`config_id` after the layer groups."""
        raise NotImplementedError

    def inner_point(self, point: Mapping[str, Value]) -> Point:
        """The equivalent point of the real per-layer space."""
        self.check_point(point)
        layers = {
            f"layers.L{layer}": bool(point[f"group.{group}"])
            for group, members in LAYER_GROUPS.items()
            for layer in members
        }
        return {**layers, **self.module_point(point)}

    def config_id(self, point: Mapping[str, Value]) -> str:
        """A short, readable, unique name of a point, e.g. ``middle+top/r16/qv+ffn``."""
        groups = "+".join(group for group in LAYER_GROUPS if point[f"group.{group}"])
        return f"{groups}/{self.module_label(point)}"

    def decode(self, point: Mapping[str, Value]) -> Structure:
        return self.inner.decode(self.inner_point(point))

    def trainable_params(self, point: Mapping[str, Value]) -> int:
        return self.inner.trainable_params(self.inner_point(point))

    def is_feasible(self, point: Mapping[str, Value]) -> bool:
        return self.inner.is_feasible(self.inner_point(point))

    def structure_key(self, point: Mapping[str, Value]) -> str:
        return self.inner.structure_key(self.inner_point(point))

    def all_points(self) -> Iterator[Point]:
        """Every feasible point, in grid order, one per configuration (inactive knobs at their first value)."""
        grids = [(False, True) if isinstance(d, Flag) else d.values for d in self.dimensions]
        for values in itertools.product(*grids):
            point = dict(zip(self.names, values))
            if self.canonical(point) == point and self.is_feasible(point):
                yield point


ATTENTION_ROLES = {"none": (), "qv": ("q", "v"), "ko": ("k", "o"), "qkvo": ("q", "k", "v", "o")}
FFN_ROLES = ("up", "down")


class GroupedLoraSpace(GroupedSpace):
    """LoRA on layer groups, attention role sets and the FFN, with one rank for every module."""

    space_name = "grouped-lora"
    dimensions: tuple[Dimension, ...] = (
        *GROUP_FLAGS,
        Choice("rank", (1, 4, 16, 64)),
        Categorical("attention", tuple(ATTENTION_ROLES)),
        Flag("ffn"),
    )
    inner_yaml = """
name: grouped-lora-inner
layers: {mask: true}
modules:
  lora:
    roles: [q, k, v, o, up, down]
    search_roles: true
    rank: {choices: [1, 4, 16, 64], per: global}
"""

    def module_point(self, point: Mapping[str, Value]) -> Point:
        on = set(ATTENTION_ROLES[str(point["attention"])]) | (set(FFN_ROLES) if point["ffn"] else set())
        roles = {f"lora.role.{role}": role in on for role in self.inner.lora_roles}
        return {**roles, "lora.rank": point["rank"]}

    def module_label(self, point: Mapping[str, Value]) -> str:
        roles = [str(point["attention"])] if point["attention"] != "none" else []
        roles += ["ffn"] if point["ffn"] else []
        return f"r{point['rank']}/{'+'.join(roles)}"


ADAPTER_SIZES = (0, 8, 64)
ADAPTER_DIMENSIONS = {"serial": "serial_adapter.size", "parallel": "parallel_adapter.size", "prefix": "prefix.length"}


class GroupedAdapterSpace(GroupedSpace):
    """Serial adapter, parallel adapter and prefix sizes on layer groups (the AutoPEFT paper's types)."""

    space_name = "grouped-adapters"
    dimensions: tuple[Dimension, ...] = (
        *GROUP_FLAGS,
        *(Choice(name, ADAPTER_SIZES) for name in ADAPTER_DIMENSIONS),
    )
    inner_yaml = f"""
name: grouped-adapters-inner
layers: {{mask: true}}
modules:
  serial_adapter: {{size: {{choices: {list(ADAPTER_SIZES)}}}}}
  parallel_adapter: {{size: {{choices: {list(ADAPTER_SIZES)}}}, scale: 4.0}}
  prefix: {{length: {{choices: {list(ADAPTER_SIZES)}}}}}
"""

    def module_point(self, point: Mapping[str, Value]) -> Point:
        return {inner: point[outer] for outer, inner in ADAPTER_DIMENSIONS.items()}

    def module_label(self, point: Mapping[str, Value]) -> str:
        return "+".join(f"{name}{point[name]}" for name in ADAPTER_DIMENSIONS if point[name])


METHOD_SIZES: dict[str, tuple[int, ...]] = {
    "lora": (2, 16), "dora": (2, 16), "loha": (2, 8), "lokr": (4, 16), "oft": (8, 32),
    "fourierft": (256, 1024), "c3a": (64, 128), "miss": (8, 32), "gralora": (8, 32),
    "ia3": (), "ln_tuning": (), "bias": (),
}  # fmt: skip
"""Methods of the grouped methods space and their sizes (none: the method has no size). VeRA,
RandLoRA and HRA are left out: at 1.3-3.5x LoRA's step time (HRA's rows took 3-5x LoRA's while
recording beside other work) they would double the table's recording time."""


class GroupedMethodsSpace(GroupedSpace):
    """One peft method (with its own size knob) on every role of the chosen layer groups."""

    space_name = "grouped-methods"
    dimensions: tuple[Dimension, ...] = (
        *GROUP_FLAGS,
        Categorical("method", tuple(METHOD_SIZES)),
        *(Choice(f"method.{name}.size", sizes) for name, sizes in METHOD_SIZES.items() if sizes),
    )
    inner_yaml = "\n".join([
        "name: grouped-methods-inner",
        "layers: {mask: true}",
        "modules:",
        "  methods:",
        "    roles: [q, k, v, o, up, down]",
        "    alpha_ratio: 2.0",
        "    choices:",
        *(f"      {name}: {{size: {{choices: {list(sizes)}}}}}" if sizes else f"      {name}: {{}}"
          for name, sizes in METHOD_SIZES.items()),
    ])  # fmt: skip

    def __init__(self, model) -> None:
        super().__init__(model)
        self.conditions = self.inner.conditions

    def module_point(self, point: Mapping[str, Value]) -> Point:
        return {name: point[name] for name in self.names if not name.startswith("group.")}

    def module_label(self, point: Mapping[str, Value]) -> str:
        method = str(point["method"])
        return f"{method}{point[f'method.{method}.size']}" if METHOD_SIZES[method] else method


GROUPED_SPACES: dict[str, type[GroupedSpace]] = {
    "lora": GroupedLoraSpace, "adapters": GroupedAdapterSpace, "methods": GroupedMethodsSpace,
}  # fmt: skip
