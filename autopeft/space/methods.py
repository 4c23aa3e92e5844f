"""The ``methods`` module type: one searched choice among peft's methods, each with its own size.

Dimensions (on top of the space's layer mask)::

    method                  lora | dora | rslora | dsee | ia3 | loha | lokr | vera | oft | ... | bias
    method.<name>.size      the size of that method (rank, block size, frequencies); only
                            present for methods with more than one valid size
    method.<name>.<field>   another searched config field of that method (DeLoRA's
                            ``delora_lambda``; see ``TunerMethod.searchable``), when the space
                            gives it more than one value
    method.role.<role>      whether the chosen method acts on role ``role`` (search_roles)

A method's size and setting dimensions are *inactive* unless that method is chosen (:meth:`MethodChoices.conditions`):
the space encodes inactive dimensions at their first value, so two points that decode to the same
structure encode to the same vector and the surrogate never sees variation in a knob that did nothing.

Binding drops what cannot act on the model, with the reason (:attr:`MethodChoices.excluded`): a
size that peft refuses on one of the chosen matrices (an OFT block that does not divide the input
width, a tuner without Conv1D support), a ``bias`` method on matrices without biases, LN tuning
on layers without norms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autopeft.errors import SpaceError
from autopeft.space.dimensions import Categorical, Choice, Dimension, Flag, Value
from autopeft.space.layout import ModelLayout
from autopeft.space.schema import MethodChoice, MethodsSpec
from autopeft.space.structure import (
    LORA_VARIANTS, NOT_ON_CONV1D, LoraModules, Place, SparseDeltas, Structure, TunerModules,
)
from autopeft.space.tuners import NORMS, TUNER_METHODS, matrix_params, method_names

SIZELESS = ("ia3", "ln_tuning", "bias")
DSEE = "dsee"
"""DSEE-style sparse + low-rank: LoRA rank r plus a sparse delta of ``in + out`` entries (one more
rank's worth) on each matrix, at the largest entries of W minus its rank-8 approximation, so DSEE
at r costs exactly LoRA at r + 1."""
KNOWN_METHODS = (*LORA_VARIANTS, DSEE, "ia3", *method_names())


@dataclass(frozen=True)
class MethodChoices:
    """The methods a ``methods`` space offers on one model.

    Attributes:
        sizes: method -> its valid sizes, in the file's order (``(0,)`` for sizeless methods).
        excluded: method -> why it cannot act on this model's chosen matrices.
        roles: the roles the methods act on.
        settings: method -> searched config field -> its values (only methods the space gives
            settings for).
    """

    sizes: Mapping[str, tuple[int, ...]]
    excluded: Mapping[str, str]
    roles: tuple[str, ...]
    settings: Mapping[str, Mapping[str, tuple[float, ...]]] = field(default_factory=dict)

    def _knobs(self) -> dict[str, tuple[str, tuple[Value, ...]]]:
        """Each method's size and setting dimensions: name -> (the method, its values)."""
        knobs = {f"method.{m}.size": (m, sizes) for m, sizes in self.sizes.items()}
        for method, fields in self.settings.items():
            knobs.update({f"method.{method}.{name}": (method, values) for name, values in fields.items()})
        return knobs

    def dimensions(self, search_roles: bool) -> list[Dimension]:
        dims: list[Dimension] = [Categorical("method", tuple(self.sizes))] if len(self.sizes) > 1 else []
        dims += [Choice(name, values) for name, (_, values) in self._knobs().items() if len(values) > 1]
        if search_roles:
            dims += [Flag(f"method.role.{role}") for role in self.roles]
        return dims

    def conditions(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Each method's size and setting dimensions act only when that method is chosen."""
        return {name: ("method", (method,)) for name, (method, values) in self._knobs().items() if len(values) > 1}

    def constants(self) -> dict[str, Value]:
        """Values of settings that are not searched (one method, or one size or setting value)."""
        fixed: dict[str, Value] = {name: values[0] for name, (_, values) in self._knobs().items()}
        if len(self.sizes) == 1:
            fixed["method"] = next(iter(self.sizes))
        return fixed


def bind_methods(spec: MethodsSpec, source: str, layout: ModelLayout, layers: Sequence[int],
                 roles: tuple[str, ...]) -> MethodChoices:
    """The methods of ``spec`` that can act on ``roles`` of ``layers``; SpaceError if none can."""
    unknown = [name for name in spec.choices if name not in KNOWN_METHODS]
    if unknown:
        raise SpaceError(
            f"{source}: modules.methods.choices: unknown method '{unknown[0]}' (known: {', '.join(KNOWN_METHODS)})"
        )
    matrices = [layout.matrix(layer, role) for layer in layers for role in roles if layout.matrix(layer, role)]
    sizes: dict[str, tuple[int, ...]] = {}
    excluded: dict[str, str] = {}
    for name, choice in spec.choices.items():
        if choice.size is None and name not in SIZELESS:
            raise SpaceError(f"{source}: modules.methods.choices.{name}: give its sizes (size: {{choices: [...]}})")
        # Not capped at the hidden size: a method's size is not a width (FourierFT's frequencies);
        # peft itself says which sizes fit the matrices.
        wanted = [0] if choice.size is None else [layout.hidden_size if c == "hidden" else c for c in choice.size.choices]
        valid = tuple(size for size in wanted if _acts_on(name, size, matrices, layout, layers))
        if valid:
            sizes[name] = valid
        else:
            excluded[name] = _why_not(name, wanted, layout)
    if not sizes:
        reasons = "; ".join(f"{m}: {why}" for m, why in excluded.items())
        raise SpaceError(f"{source}: modules.methods: no method can act on model type '{layout.model_type}' ({reasons})")
    settings = {name: _searched_settings(name, choice, source) for name, choice in spec.choices.items()}
    return MethodChoices(sizes, excluded, roles, {name: s for name, s in settings.items() if s and name in sizes})


def _searched_settings(method: str, choice: MethodChoice, source: str) -> dict[str, tuple[float, ...]]:
    """The config fields ``choice`` searches for ``method``; SpaceError for a field it cannot."""
    allowed = TUNER_METHODS[method].searchable if method in TUNER_METHODS else ()
    for name in choice.settings:
        if name not in allowed:
            raise SpaceError(
                f"{source}: modules.methods.choices.{method}.settings: '{name}' is not searchable for {method} "
                f"(searchable: {', '.join(allowed) or 'none'})"
            )
    return {name: tuple(setting.choices) for name, setting in choice.settings.items()}


def _acts_on(name: str, size: int, matrices, layout: ModelLayout, layers: Sequence[int]) -> bool:
    if name in NOT_ON_CONV1D and any(shape.conv1d for shape in matrices):
        return False
    if name == "kasa":  # it truncates r singular components of each base weight and must keep one
        return 0 < size and all(size < min(m.in_features, m.out_features) for m in matrices)
    if name in LORA_VARIANTS or name in ("ia3", DSEE):
        return size > 0 or name == "ia3"
    if name == "ln_tuning":
        return all(layout.layers[layer].norms for layer in layers)
    return all(matrix_params(name, size, shape) is not None for shape in matrices)


def _why_not(name: str, sizes: Sequence[int], layout: ModelLayout) -> str:
    if name == "bias":
        return "the chosen matrices have no bias"
    if name == "ln_tuning":
        return "some chosen layers have no normalisation module"
    conv1d = any(m.conv1d for layer in layout.layers for m in layer.matrices.values())
    if (name in TUNER_METHODS or name in NOT_ON_CONV1D) and conv1d:
        return f"peft's {name} does not act on this model's Conv1D matrices at sizes {list(sizes)}"
    return f"peft's {name} cannot act on the chosen matrices at sizes {list(sizes)}"


def decode_method(values: Mapping[str, Value], choices: MethodChoices, layout: ModelLayout,
                  layers: Sequence[int], alpha_ratio: float) -> Structure:
    """The structure of the chosen method, at its size, on the chosen roles of ``layers``."""
    method = str(values["method"])
    size = int(values[f"method.{method}.size"])
    settings = {name: float(values[f"method.{method}.{name}"]) for name in choices.settings.get(method, {})}
    if method == "ln_tuning":
        return Structure(tuner=TunerModules(method, 0, frozenset((layer, NORMS) for layer in layers)))
    places: set[Place] = {
        (layer, role)
        for layer in layers
        for role in choices.roles
        if layout.matrix(layer, role) is not None and values.get(f"method.role.{role}", True)
    }
    if method in LORA_VARIANTS:
        return Structure(lora=LoraModules({p: size for p in places}, variant=method, alpha_ratio=alpha_ratio))
    if method == DSEE:
        deltas = {p: layout.matrix(*p).in_features + layout.matrix(*p).out_features for p in places}
        return Structure(lora=LoraModules({p: size for p in places}, alpha_ratio=alpha_ratio),
                         sparse=SparseDeltas(deltas, "residual"))
    if method == "ia3":
        return Structure(ia3=frozenset(places))
    return Structure(tuner=TunerModules(method, size, frozenset(places), settings))
