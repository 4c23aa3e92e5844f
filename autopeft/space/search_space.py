"""A search space bound to one model: its dimensions, and points decoded into structures.

Dimension names say what they control::

    layers.L3               layer 3 carries modules at all (when layers.mask is searched);
                            with layers.groups, G1 names the second group of layers instead of L1
    lora.role.q             LoRA may sit on role q (when lora.search_roles)
    lora.rank               one rank for every placement       (rank.per: global)
    lora.rank.L3            rank for every role of layer 3     (per: layer)
    lora.rank.q             rank for role q in every layer      (per: role)
    lora.rank.L3.q          rank of one placement               (per: placement)
    lora.variant            lora | dora | rslora | kasa
    lora.init               default | gaussian | orthogonal | pissa | olora | eva | corda
    ia3[.L3][.q]            IA3 switched on, at the granularity of ia3.per
    serial_adapter.size[.L3], parallel_adapter.size[.L3], prefix.length[.L3]
    method, method.<name>.size, method.role.q   the peft method and its size (autopeft.space.methods)

Where LoRA and IA3 both claim a placement, LoRA takes it: peft cannot stack the two on one matrix.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence

from torch import nn

from autopeft.space.allocation import SCORES_OF_RULE, allocate, largest_sparse_delta
from autopeft.space.sensitivity import Sensitivity
from autopeft.errors import BudgetError, SpaceError
from autopeft.space.cost import count_trainable, count_tuner
from autopeft.space.dimensions import Categorical, Choice, Dimension, DimensionVectors, Flag, Real, Value
from autopeft.space.architectures import FUSED_INTO, Architecture, declared_architecture
from autopeft.space.layout import ModelLayout, read_layout
from autopeft.space.methods import MethodChoices, bind_methods, decode_method
from autopeft.space.schema import Granularity, Sizes, SpaceSpec
from autopeft.space.structure import DATA_DRIVEN_INITS, NOT_ON_CONV1D, LayerSchedule, LoraModules, Place, Structure
from autopeft.space.tuners import measured_mask


def _granular_name(prefix: str, per: Granularity, unit: str, role: str | None = None) -> str:
    """Dimension name of a setting at ``per`` granularity; ``unit`` is a layer (L3) or group (G1)."""
    if per == "global":
        return prefix
    if per == "layer":
        return f"{prefix}.{unit}"
    if per == "role":
        return f"{prefix}.{role}"
    return f"{prefix}.{unit}.{role}"


class SearchSpace(DimensionVectors):
    """The dimensions of ``spec`` on the model described by ``layout``.

    Raises SpaceError (naming the file and key) when the spec names roles or layers the model
    does not have.
    """

    def __init__(
        self, spec: SpaceSpec, layout: ModelLayout, sensitivities: Mapping[str, Sensitivity] | None = None
    ) -> None:
        self.spec = spec
        self.layout = layout
        self.sensitivities = dict(sensitivities or {})
        self.layers = self._eligible_layers()
        self.units = self._layer_units()
        modules, budget = spec.modules, spec.budget
        self.lora_roles = ()
        if modules is not None and modules.lora is not None:
            self.lora_roles = self._resolve_roles(modules.lora.roles, "modules.lora.roles")
        if budget is not None:
            self.lora_roles = self._resolve_roles(budget.roles, "budget.roles")
        self.ia3_roles = ()
        if modules is not None and modules.ia3 is not None:
            self.ia3_roles = self._resolve_roles(modules.ia3.roles, "modules.ia3.roles")
        self.methods: MethodChoices | None = None
        if modules is not None and modules.methods is not None:
            roles = self._resolve_roles(modules.methods.roles, "modules.methods.roles")
            self.methods = bind_methods(modules.methods, spec.source, layout, self.layers, roles)
        self._constants: dict[str, Value] = {}
        self.dimensions: tuple[Dimension, ...] = (
            *(self._budget_dimensions() if budget is not None else self._module_dimensions()),
            *self._schedule_dimensions(),
        )
        self.conditions = {name: condition for name, condition in self._conditions().items() if name in self.names}

    @property
    def needed_sensitivities(self) -> tuple[str, ...]:
        """Sensitivity methods (``spt``, ``ist``) that decoding this space needs scores for."""
        rules = self.spec.budget.rules if self.spec.budget is not None else []
        schedules = self.spec.schedule.kinds if self.spec.schedule is not None else []
        needed = {SCORES_OF_RULE[rule] for rule in rules if rule in SCORES_OF_RULE} | set(schedules)
        return tuple(m for m in ("spt", "ist") if m in needed)

    @property
    def measured_inits(self) -> dict[str, int]:
        """Data-driven LoRA init the space offers on this model (``eva``, ``corda``) -> the largest
        rank a structure can take (each is measured once at that rank)."""
        lora = self.spec.modules.lora if self.spec.modules is not None else None
        if lora is None:
            return {}
        offered = self._on_model(lora.inits, "modules.lora.inits")
        rank = max(lora.rank.resolve(self.layout.hidden_size))
        return {init: rank for init in DATA_DRIVEN_INITS if init in offered}

    @property
    def measured_masks(self) -> dict[str, int]:
        """Measured mask rule (``sensitivity``, ``lottery``) -> the largest size a sparse update by
        it can take, in units of ``in + out`` entries, for each rule the space offers on this model
        (its entries are ranked once): a SHiRA method's largest size, or the deepest sparse delta
        of the ``spt_sparse`` allocation."""
        budget = self.spec.budget
        if budget is not None and "spt_sparse" in budget.rules:
            most = round(budget.fraction.high * self.layout.total_params)
            return {"sensitivity": largest_sparse_delta(self.layout, self.lora_roles, most, budget.switch_factor)}
        if self.methods is None:
            return {}
        largest: dict[str, int] = {}
        for method, sizes in self.methods.sizes.items():
            rule = measured_mask(method)
            if rule is not None:
                largest[rule] = max(largest.get(rule, 0), *sizes)
        return largest

    def with_sensitivities(self, sensitivities: Mapping[str, Sensitivity]) -> SearchSpace:
        """The same space, decoding with these measured scores."""
        return SearchSpace(self.spec, self.layout, sensitivities)

    # ----------------------------------------------------------------- binding to the model
    def _eligible_layers(self) -> tuple[int, ...]:
        count = self.layout.num_layers
        include = self.spec.layers.include
        if include is None:
            return tuple(range(count))
        missing = [i for i in include if i >= count]
        if missing:
            raise SpaceError(
                f"{self.spec.source}: layers.include: layer {missing[0]} does not exist "
                f"(the model has {count} layers, 0..{count - 1})"
            )
        return tuple(sorted(set(include)))

    def _layer_units(self) -> dict[int, str]:
        """Layer -> the name its per-layer dimensions use: itself (L3), or its group (G1)."""
        groups = self.spec.layers.groups
        if groups is None:
            return {layer: f"L{layer}" for layer in self.layers}
        groups = min(groups, len(self.layers))
        return {layer: f"G{i * groups // len(self.layers)}" for i, layer in enumerate(self.layers)}

    def _resolve_roles(self, names: Sequence[str], key: str) -> tuple[str, ...]:
        present = self.layout.roles
        aliases = self.layout.role_aliases()
        resolved = []
        for name in names:
            fused = FUSED_INTO.get(name)
            role = name if name in present else fused if fused in present else aliases.get(name)
            if role is None:
                raise SpaceError(
                    f"{self.spec.source}: {key}: unknown module '{name}' for model type "
                    f"'{self.layout.model_type}' (roles: {', '.join(present)}; "
                    f"module names: {', '.join(aliases)})"
                )
            if role not in resolved:
                resolved.append(role)
        return tuple(resolved)

    # ----------------------------------------------------------------------- dimensions
    def _budget_dimensions(self) -> Iterable[Dimension]:
        budget = self.spec.budget
        if self.spec.layers.mask or self.spec.layers.include is not None or self.spec.layers.groups:
            raise SpaceError(f"{self.spec.source}: layers: a budget space places modules itself; remove 'layers'")
        searched = (
            (Real("budget.fraction", budget.fraction.low, budget.fraction.high, log=True), budget.fraction.low),
            (Categorical("budget.rule", tuple(budget.rules)), budget.rules[0]),
            (Real("budget.sharpness", budget.sharpness.low, budget.sharpness.high), budget.sharpness.low),
            (Categorical("budget.variant", tuple(budget.variants)), budget.variants[0]),
        )
        for dimension, only_value in searched:
            if dimension.bounds[0] < dimension.bounds[1]:
                yield dimension
            else:
                self._constants[dimension.name] = only_value

    def _module_dimensions(self) -> Iterable[Dimension]:
        modules = self.spec.modules
        if self.spec.layers.mask:
            yield from (Flag(f"layers.{unit}") for unit in dict.fromkeys(self.units.values()))
        if self.methods is not None:
            self._constants.update(self.methods.constants())
            yield from self.methods.dimensions(modules.methods.search_roles)
        if modules.lora is not None:
            lora = modules.lora
            if lora.search_roles:
                yield from (Flag(f"lora.role.{role}") for role in self.lora_roles)
            yield from self._sized("lora.rank", lora.rank, self.lora_roles)
            yield from self._categorical("lora.variant", self._on_model(lora.variants, "modules.lora.variants"))
            yield from self._categorical("lora.init", self._on_model(lora.inits, "modules.lora.inits"))
        if modules.ia3 is not None and modules.ia3.searched:
            yield from (Flag(name) for name in self._granular_names("ia3", modules.ia3.per, self.ia3_roles))
        for prefix, sizes in (
            ("serial_adapter.size", modules.serial_adapter and modules.serial_adapter.size),
            ("parallel_adapter.size", modules.parallel_adapter and modules.parallel_adapter.size),
            ("prefix.length", modules.prefix and modules.prefix.length),
        ):
            if sizes:
                yield from self._sized(prefix, sizes, ())

    def _categorical(self, name: str, values: Sequence[str]) -> list[Categorical]:
        """A searched choice, or a constant when only one value is offered."""
        if len(values) > 1:
            return [Categorical(name, tuple(values))]
        self._constants[name] = values[0]
        return []

    def _on_model(self, options: Sequence[str], key: str) -> list[str]:
        """``options`` without those peft cannot apply to this model's Conv1D matrices."""
        conv1d = any(self.layout.matrix(layer, role).conv1d for layer in self.layers for role in self.lora_roles
                     if self.layout.matrix(layer, role) is not None)
        kept = [o for o in options if not (conv1d and o in NOT_ON_CONV1D)]
        if not kept:
            raise SpaceError(f"{self.spec.source}: {key}: {', '.join(options)} cannot act on this model's Conv1D matrices")
        return kept

    def _granular_names(self, prefix: str, per: Granularity, roles: Sequence[str]) -> list[str]:
        names: dict[str, None] = {}
        for layer in self.layers:
            for role in roles or (None,):
                if role is None or self.layout.matrix(layer, role) is not None:
                    names[_granular_name(prefix, per, self.units[layer], role)] = None
        return list(names)

    def _sized(self, prefix: str, sizes: Sizes, roles: Sequence[str]) -> list[Choice]:
        choices = sizes.resolve(self.layout.hidden_size)
        names = self._granular_names(prefix, sizes.per, roles)
        if len(choices) == 1:
            self._constants.update(dict.fromkeys(names, choices[0]))
            return []
        return [Choice(name, tuple(choices)) for name in names]

    @property
    def space_name(self) -> str:
        return self.spec.name

    # ------------------------------------------------------------------------- decoding
    def decode(self, point: Mapping[str, Value]) -> Structure:
        """The structure a point describes (possibly empty; see :meth:`is_feasible`)."""
        values = {**self._constants, **point}
        structure = self._decode_modules(values)
        schedule = self._decode_schedule(values, structure)
        return structure if schedule is None else dataclasses.replace(structure, schedule=schedule)

    def _decode_modules(self, values: Mapping[str, Value]) -> Structure:
        if self.spec.budget is not None:
            return self._decode_budget(values)
        layers = [i for i in self.layers if values.get(f"layers.{self.units[i]}", True)]
        if self.methods is not None:
            return decode_method(values, self.methods, self.layout, layers, self.spec.modules.methods.alpha_ratio)
        lora = self._decode_lora(values, layers)
        return Structure(
            lora=lora,
            ia3=self._decode_ia3(values, layers, taken=set(lora.ranks) if lora else set()),
            serial_adapter=self._decode_sizes(values, "serial_adapter.size", layers),
            parallel_adapter=self._decode_sizes(values, "parallel_adapter.size", layers),
            parallel_scale=self.spec.modules.parallel_adapter.scale if self.spec.modules.parallel_adapter else 4.0,
            prefix=self._decode_sizes(values, "prefix.length", layers),
        )

    def _decode_schedule(self, values: Mapping[str, Value], structure: Structure) -> LayerSchedule | None:
        """LISA / IST over the layers that carry modules; None when unscheduled or nothing to pick."""
        kind = str(values.get("schedule.kind", "none"))
        layers = structure.layers
        if kind == "none" or len(layers) < 2:
            return None
        if kind == "ist" and "ist" not in self.sensitivities:
            raise SpaceError(f"{self.spec.source}: schedule 'ist' needs IST scores; measure them first")
        weights = self.sensitivities["ist"].layer_importance if kind == "ist" else ()
        active = min(int(values["schedule.active"]), len(layers) - 1)
        return LayerSchedule(kind, active, int(values["schedule.period"]), tuple(weights))

    def _schedule_dimensions(self) -> Iterable[Dimension]:
        schedule = self.spec.schedule
        if schedule is None:
            return []
        if max(schedule.active) >= len(self.layers):
            raise SpaceError(
                f"{self.spec.source}: schedule.active: {max(schedule.active)} layers at a time leaves none out of "
                f"the {len(self.layers)} layers that may carry modules; use at most {len(self.layers) - 1}"
            )
        dims = self._categorical("schedule.kind", schedule.kinds)
        for name, values in (("schedule.active", schedule.active), ("schedule.period", schedule.period)):
            if len(values) > 1:
                dims.append(Choice(name, tuple(values)))
            else:
                self._constants[name] = values[0]
        return dims

    def _conditions(self) -> dict[str, tuple[str, tuple[Value, ...]]]:
        """A method's size acts only when that method is chosen; a schedule's knobs only under a schedule."""
        conditions = self.methods.conditions() if self.methods is not None else {}
        if self.spec.schedule is not None:
            acting = tuple(kind for kind in self.spec.schedule.kinds if kind != "none")
            conditions |= {name: ("schedule.kind", acting) for name in ("schedule.active", "schedule.period")}
        return conditions

    def _decode_budget(self, values: Mapping[str, Value]) -> Structure:
        """Allocate LoRA ranks for the point's budget, rule and sharpness (empty if impossible)."""
        budget, rule = self.spec.budget, str(values["budget.rule"])
        scores = SCORES_OF_RULE.get(rule)
        if scores is not None and scores not in self.sensitivities:
            raise SpaceError(f"{self.spec.source}: rule '{rule}' needs {scores.upper()} scores; measure them first")
        try:
            return allocate(
                self.layout,
                self.sensitivities.get(scores),
                budget_params=round(float(values["budget.fraction"]) * self.layout.total_params),
                rule=rule,
                sharpness=float(values["budget.sharpness"]),
                roles=self.lora_roles,
                variant=str(values["budget.variant"]),
                alpha_ratio=budget.alpha_ratio,
                switch_factor=budget.switch_factor,
            )
        except BudgetError:
            return Structure()

    def _decode_lora(self, values: Mapping[str, Value], layers: Sequence[int]) -> LoraModules | None:
        lora = self.spec.modules.lora
        if lora is None:
            return None
        ranks: dict[Place, int] = {}
        for layer in layers:
            for role in self.lora_roles:
                if self.layout.matrix(layer, role) is None or not values.get(f"lora.role.{role}", True):
                    continue
                rank = int(values[_granular_name("lora.rank", lora.rank.per, self.units[layer], role)])
                if rank > 0:
                    ranks[(layer, role)] = rank
        return LoraModules(
            ranks=ranks,
            variant=str(values["lora.variant"]),
            alpha_ratio=lora.alpha_ratio,
            dropout=lora.dropout,
            init=str(values["lora.init"]),
        )

    def _decode_ia3(
        self, values: Mapping[str, Value], layers: Sequence[int], taken: set[Place]
    ) -> frozenset[Place]:
        ia3 = self.spec.modules.ia3
        if ia3 is None:
            return frozenset()
        return frozenset(
            (layer, role)
            for layer in layers
            for role in self.ia3_roles
            if self.layout.matrix(layer, role) is not None
            and (layer, role) not in taken
            and (not ia3.searched or values[_granular_name("ia3", ia3.per, self.units[layer], role)])
        )

    def _decode_sizes(self, values: Mapping[str, Value], prefix: str, layers: Sequence[int]) -> dict[int, int]:
        sizes = {}
        for layer in layers:
            for name in (f"{prefix}.{self.units[layer]}", prefix):
                if name in values:
                    sizes[layer] = int(values[name])
                    break
        return sizes

    # ----------------------------------------------------------------- costs and validity
    def trainable_params(self, point: Mapping[str, Value]) -> int:
        """Exact trainable parameters of the decoded structure, task head included."""
        return count_trainable(self.decode(point), self.layout)

    def trainable_fraction(self, point: Mapping[str, Value]) -> float:
        return self.trainable_params(point) / self.layout.total_params

    def is_feasible(self, point: Mapping[str, Value]) -> bool:
        """A point is feasible when it adds at least one module and respects the trainable cap."""
        structure = self.decode(point)
        if structure.is_empty or (structure.tuner is not None and count_tuner(structure.tuner, self.layout) is None):
            return False
        cap = self.spec.max_trainable_fraction
        return cap is None or self.trainable_fraction(point) <= cap

    def structure_key(self, point: Mapping[str, Value]) -> str:
        """Identical for points that decode to the same structure (used to avoid duplicates)."""
        return json.dumps(self.decode(point).to_json(), sort_keys=True)


def declared_architecture_of(spec: SpaceSpec) -> Architecture | None:
    """The architecture a space file declares by hand (``architecture:``), or None."""
    declared = spec.architecture
    if declared is None:
        return None
    return declared_architecture(
        declared.layers,
        declared.roles,
        ffn_input=declared.ffn_input,
        ffn_output=declared.ffn_output,
        feedforward_roles=declared.feedforward_roles,
    )


def bind_space(
    spec: SpaceSpec, model: nn.Module, sensitivities: Mapping[str, Sensitivity] | None = None
) -> SearchSpace:
    """Bind ``spec`` to a model (real or a meta-device skeleton) through its layout."""
    return SearchSpace(spec, read_layout(model, declared_architecture_of(spec)), sensitivities)
