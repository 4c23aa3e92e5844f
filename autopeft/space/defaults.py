"""The structures a practitioner would try first, as points of a search space.

A search that returns a front worse than the structure its user would have picked by hand has
failed them. So, like the status-quo arm of a Bayesian-optimisation platform, each job runs these
first when its space can express them, and the Pareto report marks where they landed:

- ``LoRA r8 q,v``: LoRA rank 8 on the attention query and value of every layer (peft's classic
  example);
- ``LoRA r8 all-linear``: rank 8 on every linear matrix of every layer (QLoRA's recipe);
- ``IA3``: IA3 vectors on key, value and the FFN output of every layer (peft's IA3 defaults).

A default is found by setting each dimension by its name (layers on, the default's roles on, rank
8, plain LoRA, no adapter, prefix or layer schedule; in a ``methods`` space, the method ``lora`` or
``ia3``) and kept only if the point decodes to exactly that structure;
a space that cannot express it (no rank 8, a layer subset, a budget space) simply has no such
default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from autopeft.errors import SpaceError
from autopeft.space.dimensions import Categorical, Choice, Dimension, Point, Value
from autopeft.space.search_space import SearchSpace
from autopeft.space.structure import Place

DEFAULT_RANK = 8
IA3_ROLES = ("k", "v", "down")


@dataclass(frozen=True)
class PractitionerDefault:
    """A named hand-picked structure and the point of the space that decodes to it."""

    label: str
    point: Point


def practitioner_defaults(space: SearchSpace) -> list[PractitionerDefault]:
    """The defaults ``space`` can express, in the order above (feasible points only)."""
    layout = space.layout
    every_layer = range(layout.num_layers)
    wanted = {
        f"LoRA r{DEFAULT_RANK} q,v": ({"q", "v"}, False),
        f"LoRA r{DEFAULT_RANK} all-linear": (set(layout.roles), False),
        "IA3": (set(), True),
    }
    found = []
    for label, (lora_roles, ia3) in wanted.items():
        places = {(layer, role) for layer in every_layer for role in layout.roles if layout.matrix(layer, role)}
        lora_places = {p for p in places if p[1] in lora_roles}
        ia3_places = {p for p in places if ia3 and p[1] in IA3_ROLES}
        if not (lora_places or ia3_places):
            continue
        point = _guess(space, lora_roles, ia3)
        if point is not None and _decodes_to(space, point, lora_places, ia3_places):
            found.append(PractitionerDefault(label, point))
    return found


def _guess(space: SearchSpace, lora_roles: set[str], ia3: bool) -> Point | None:
    """A point setting every dimension by its name, or None when a dimension has no such setting."""
    point: dict[str, Value] = {}
    for dimension in space.dimensions:
        kind, _, rest = dimension.name.partition(".")
        last = dimension.name.rsplit(".", 1)[-1]
        if kind == "layers":
            value: Value = True
        elif dimension.name.startswith("lora.role."):
            value = last in lora_roles
        elif dimension.name.startswith("lora.rank"):
            role_specific = last in space.lora_roles
            value = 0 if not lora_roles or (role_specific and last not in lora_roles) else DEFAULT_RANK
        elif dimension.name == "lora.variant":
            value = "lora"
        elif dimension.name == "lora.init":
            value = "default"
        elif kind == "ia3":
            value = ia3 and (last not in space.ia3_roles or last in IA3_ROLES)
        elif kind in ("serial_adapter", "parallel_adapter", "prefix"):
            value = 0
        elif kind == "method":
            value = _method_value(dimension, lora_roles, ia3)
        elif dimension.name == "schedule.kind":
            value = "none"
        elif kind == "schedule" and isinstance(dimension, (Choice, Categorical)):
            value = dimension.values[0]  # inactive without a schedule
        else:
            return None
        if isinstance(dimension, (Choice, Categorical)) and value not in dimension.values:
            return None
        point[dimension.name] = value
    return point


def _method_value(dimension: Dimension, lora_roles: set[str], ia3: bool) -> Value:
    """A ``method`` space's setting for a default: the method (``lora`` or ``ia3``), its roles, rank
    8 for LoRA, and any value for the sizes of methods not chosen (they do not decode)."""
    name, last = dimension.name, dimension.name.rsplit(".", 1)[-1]
    chosen = "ia3" if ia3 else "lora"
    if name == "method":
        return chosen
    if name.startswith("method.role."):
        return last in (IA3_ROLES if ia3 else lora_roles)
    if name == f"method.{chosen}.size":
        return DEFAULT_RANK
    return dimension.values[0]


def _decodes_to(space: SearchSpace, point: Mapping[str, Value], lora: set[Place], ia3: set[Place]) -> bool:
    try:
        structure = space.decode(point)
    except SpaceError:
        return False
    expected_lora = {place: DEFAULT_RANK for place in lora}
    actual_lora = dict(structure.lora.ranks) if structure.lora else {}
    plain = structure.lora is None or (structure.lora.variant == "lora" and structure.lora.init == "default")
    only_these = set(structure.module_types) <= {"lora", "ia3"}
    return (
        plain and only_these and actual_lora == expected_lora and set(structure.ia3) == ia3
        and space.is_feasible(point)
    )  # fmt: skip


