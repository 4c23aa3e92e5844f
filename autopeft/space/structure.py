"""A concrete PEFT structure: which module sits where, and how large it is.

A :class:`Structure` is what a point of a search space decodes to and what injectors, the exact
cost model and exporters consume. It names places by ``(layer index, role)`` and is independent
of any model's module paths; a :class:`~autopeft.space.layout.ModelLayout` turns those into
module names. Its JSON form (``to_json``) is what the store keeps for every trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

LoraVariant = Literal["lora", "dora", "rslora", "kasa"]
LORA_VARIANTS: tuple[LoraVariant, ...] = ("lora", "dora", "rslora", "kasa")
LoraInit = Literal["default", "gaussian", "orthogonal", "pissa", "olora", "eva", "corda"]
LORA_INITS: tuple[LoraInit, ...] = ("default", "gaussian", "orthogonal", "pissa", "olora", "eva", "corda")
BASE_CHANGING_INITS = ("pissa", "olora", "corda")
"""Inits that move the principal part of each base weight into A and B (base = residual)."""
DATA_DRIVEN_INITS = ("eva", "corda")
"""Inits that start from a measurement on task data, made once per job and handed to injection."""
NOT_ON_CONV1D = ("kasa", "olora")
"""LoRA options peft 0.21 cannot apply to Conv1D (fan_in_fan_out) matrices: KaSA refuses them and
OLoRA builds factors of the wrong shape."""

Place = tuple[int, str]
"""``(layer index, role)``, e.g. ``(0, "q")``."""


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(sorted(mapping.items())))


def place_key(place: Place) -> str:
    """JSON key of a place: ``(3, "q") -> "3.q"``."""
    return f"{place[0]}.{place[1]}"


def parse_place_key(key: str) -> Place:
    layer, role = key.split(".", 1)
    return int(layer), role


RSLORA_ALPHA_RANK = 4
"""rsLoRA keeps one ``lora_alpha`` at every rank (``alpha_ratio`` times this rank: 8), as peft and
the rsLoRA paper use it, so its scaling alpha / sqrt(r) falls with the rank and equals plain LoRA's
(2) at rank 16: 8 at r1, 2.8 at r8, 1.4 at r32. Both hotter settings failed 600-step SST-2 runs at
1e-3. With ``alpha = 2 r`` (scaling 2 sqrt(r), 11.3 at r32) high-rank structures degraded: one
collapsed, one scored 0.682 and 0.755 at two seeds. With alpha fixed at 16 (scaling 16 at r1)
a structure with rank-1 modules learnt and then drifted back (train loss 0.56 -> 0.66, dev 0.667
and 0.761 at one seed, 0.842 at another). At alpha 8 the same run trained smoothly to 0.839."""


@dataclass(frozen=True)
class LoraModules:
    """LoRA-family modules.

    Attributes:
        ranks: place -> rank (> 0).
        variant: ``lora``; ``dora`` (adds a learned magnitude vector per output feature);
            ``rslora`` (scaling alpha / sqrt(r) instead of alpha / r); ``kasa`` (drops the r
            smallest singular components of the base weight and learns r singular values
            between A and B).
        init: how A and B start: ``default`` (peft's: Kaiming A, zero B), ``gaussian``,
            ``orthogonal``, ``pissa`` (A, B from the top-r singular vectors of the base weight,
            which keeps the residual), ``olora`` (from its QR decomposition), ``eva`` (A from
            the top-r right-singular vectors of the matrix's inputs on task data, B zero) or
            ``corda`` (A, B from the top-r singular triplets of the weight times its inputs'
            covariance on task data, which keeps the residual).
        alpha_ratio: ``lora_alpha = alpha_ratio * rank`` for every module, so that plain LoRA's
            scaling alpha / r is the same at every rank, unless ``alpha_rank`` is set.
        alpha_rank: when positive, ``lora_alpha = alpha_ratio * alpha_rank`` at every rank; 0
            scales alpha with the rank. Unset, it is :data:`RSLORA_ALPHA_RANK` for rsLoRA and 0
            otherwise. A structure stored before rsLoRA kept one alpha has no ``alpha_rank`` in
            its JSON and reads back as 0, so it exports as it was trained.
        dropout: dropout on the LoRA input.
    """

    ranks: Mapping[Place, int]
    variant: LoraVariant = "lora"
    alpha_ratio: float = 2.0
    dropout: float = 0.0
    init: LoraInit = "default"
    alpha_rank: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranks", _frozen(self.ranks))
        if self.alpha_rank is None:
            object.__setattr__(self, "alpha_rank", RSLORA_ALPHA_RANK if self.variant == "rslora" else 0)

    @property
    def changes_base_weights(self) -> bool:
        """PiSSA, OLoRA and KaSA rewrite the weights they act on when injected."""
        return self.init in BASE_CHANGING_INITS or self.variant == "kasa"

    @property
    def starts_from_measurement(self) -> bool:
        """EVA, CorDA: the modules start from a measurement on task data, which injection and
        exports must carry."""
        return self.init in DATA_DRIVEN_INITS

    def alpha(self, rank: int) -> float:
        """``lora_alpha`` of a module of ``rank`` (see ``alpha_ratio``)."""
        return self.alpha_ratio * (self.alpha_rank or rank)


@dataclass(frozen=True)
class TunerModules:
    """One peft tuner other than LoRA and IA3 (LoHa, LoKr, VeRA, OFT, ...), or trained biases.

    Attributes:
        method: a key of :data:`autopeft.space.tuners.TUNER_METHODS`, or ``bias``.
        size: the method's one size (rank, block size, frequencies; 0 for methods without one).
        places: the matrices it acts on; ``ln_tuning`` uses ``(layer, "norms")``.
        settings: searched peft config fields beside the size (DeLoRA's ``delora_lambda``); a field
            not given keeps autopeft's setting for the method.
    """

    method: str
    size: int
    places: frozenset[Place]
    settings: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "places", frozenset(self.places))
        object.__setattr__(self, "settings", _frozen(self.settings))


SparseRule = Literal["sensitivity", "lottery", "residual"]
SPARSE_RULES: tuple[SparseRule, ...] = ("sensitivity", "lottery", "residual")


@dataclass(frozen=True)
class SparseDeltas:
    """Sparse updates of chosen weight entries, any number per matrix, alone or beside LoRA.

    Unlike a SHiRA tuner (``sparse_*`` methods, ``size * (in + out)`` entries on matrices no other
    module claims), each matrix here trains its own count of entries, and the matrix may also carry
    LoRA: SPT's sparse half (the allocator's ``spt_sparse`` rule) and DSEE's sparse residual.

    Attributes:
        entries: place -> how many entries of that weight train (> 0).
        rule: how they are chosen: ``sensitivity`` or ``lottery`` (the job's measured ranking, as
            for the SHiRA rules of the same names) or ``residual`` (DSEE: the largest entries of
            W minus its rank-8 approximation, a function of the weight alone).
    """

    entries: Mapping[Place, int]
    rule: SparseRule = "sensitivity"

    def __post_init__(self) -> None:
        if self.rule not in SPARSE_RULES:
            raise ValueError(f"unknown sparse rule {self.rule!r} (known: {', '.join(SPARSE_RULES)})")
        object.__setattr__(self, "entries", _frozen({p: int(k) for p, k in self.entries.items() if k > 0}))


ScheduleKind = Literal["lisa", "ist"]


@dataclass(frozen=True)
class LayerSchedule:
    """Which layers' modules train when: every ``period`` steps, ``active`` layers are sampled.

    Attributes:
        kind: ``lisa`` (layers sampled uniformly, as LISA does) or ``ist`` (sampled in proportion
            to ``weights``, the layers' measured importance, as IST does).
        active: layers whose modules train at a time (LISA's gamma); the task head always trains.
        period: steps between two samplings (LISA's K); each sampling starts a fresh optimizer
            over the sampled layers' parameters, so optimizer state stays with the active layers.
        weights: per layer in layout order, the sampling weights (IST); empty for uniform.
    """

    kind: ScheduleKind
    active: int
    period: int
    weights: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "active": self.active, "period": self.period, "weights": list(self.weights)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LayerSchedule:
        weights = tuple(float(w) for w in data.get("weights", ()))
        return cls(data["kind"], int(data["active"]), int(data["period"]), weights)


@dataclass(frozen=True)
class Structure:
    """A complete PEFT structure for one model.

    Attributes:
        lora: LoRA-family modules, or None.
        ia3: places carrying an IA3 scaling vector.
        serial_adapter: layer -> bottleneck size of a serial (Pfeiffer) adapter after the FFN.
        parallel_adapter: layer -> bottleneck size of a parallel adapter beside the FFN.
        parallel_scale: output scale of the parallel adapters.
        prefix: layer -> number of learned key/value prefix vectors.
        tuner: another peft tuner, or trained biases, on matrices no other module claims.
        sparse: sparse updates of chosen entries, on matrices with or without LoRA (not the
            tuner's).
        schedule: which layers' modules train at which steps (LISA / IST), or None for all
            at every step. It changes how the proxy trains, not which modules exist: counts and
            exports are the structure's.
    """

    lora: LoraModules | None = None
    ia3: frozenset[Place] = frozenset()
    serial_adapter: Mapping[int, int] = field(default_factory=dict)
    parallel_adapter: Mapping[int, int] = field(default_factory=dict)
    parallel_scale: float = 4.0
    prefix: Mapping[int, int] = field(default_factory=dict)
    tuner: TunerModules | None = None
    sparse: SparseDeltas | None = None
    schedule: LayerSchedule | None = None

    def __post_init__(self) -> None:
        if self.sparse is not None and not self.sparse.entries:
            object.__setattr__(self, "sparse", None)
        if self.sparse is not None and self.tuner is not None and set(self.sparse.entries) & self.tuner.places:
            raise ValueError("sparse deltas and a tuner on the same matrix: a tuner's matrices are its own")
        if self.lora is not None and not self.lora.ranks:
            object.__setattr__(self, "lora", None)
        if self.tuner is not None and not self.tuner.places:
            object.__setattr__(self, "tuner", None)
        object.__setattr__(self, "ia3", frozenset(self.ia3))
        for name in ("serial_adapter", "parallel_adapter", "prefix"):
            object.__setattr__(self, name, _frozen({k: v for k, v in getattr(self, name).items() if v > 0}))

    @property
    def is_empty(self) -> bool:
        """True when the structure adds no module at all (only the task head would train)."""
        return not (self.lora or self.ia3 or self.serial_adapter or self.parallel_adapter or self.prefix or self.tuner
                    or self.sparse)

    @property
    def layers(self) -> tuple[int, ...]:
        """Layers (indices into the layout's layers) that carry at least one module."""
        layers = {layer for layer, _ in self.ia3}
        layers |= {layer for layer, _ in self.lora.ranks} if self.lora else set()
        layers |= {layer for layer, _ in self.tuner.places} if self.tuner else set()
        layers |= {layer for layer, _ in self.sparse.entries} if self.sparse else set()
        layers |= set(self.serial_adapter) | set(self.parallel_adapter) | set(self.prefix)
        return tuple(sorted(layers))

    @property
    def module_types(self) -> tuple[str, ...]:
        present = {
            "lora": self.lora is not None,
            "ia3": bool(self.ia3),
            "serial_adapter": bool(self.serial_adapter),
            "parallel_adapter": bool(self.parallel_adapter),
            "prefix": bool(self.prefix),
            "tuner": self.tuner is not None,
            "sparse": self.sparse is not None,
        }
        return tuple(name for name, on in present.items() if on)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` inverts it exactly."""
        data: dict[str, Any] = {}
        if self.lora is not None:
            data["lora"] = {
                "variant": self.lora.variant,
                "alpha_ratio": self.lora.alpha_ratio,
                "dropout": self.lora.dropout,
                "init": self.lora.init,
                "ranks": {place_key(p): r for p, r in self.lora.ranks.items()},
                **({"alpha_rank": self.lora.alpha_rank} if self.lora.alpha_rank else {}),
            }
        if self.ia3:
            data["ia3"] = sorted(place_key(p) for p in self.ia3)
        if self.serial_adapter:
            data["serial_adapter"] = {str(k): v for k, v in self.serial_adapter.items()}
        if self.parallel_adapter:
            data["parallel_adapter"] = {
                "scale": self.parallel_scale,
                "sizes": {str(k): v for k, v in self.parallel_adapter.items()},
            }
        if self.prefix:
            data["prefix"] = {str(k): v for k, v in self.prefix.items()}
        if self.tuner is not None:
            data["tuner"] = {
                "method": self.tuner.method,
                "size": self.tuner.size,
                "places": sorted(place_key(p) for p in self.tuner.places),
            }
            if self.tuner.settings:
                data["tuner"]["settings"] = dict(self.tuner.settings)
        if self.sparse is not None:
            data["sparse"] = {"rule": self.sparse.rule,
                              "entries": {place_key(p): k for p, k in self.sparse.entries.items()}}
        if self.schedule is not None:
            data["schedule"] = self.schedule.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Structure:
        lora = data.get("lora")
        parallel = data.get("parallel_adapter", {})
        tuner, sparse = data.get("tuner"), data.get("sparse")
        return cls(
            lora=None
            if lora is None
            else LoraModules(
                ranks={parse_place_key(k): int(r) for k, r in lora["ranks"].items()},
                variant=lora["variant"],
                alpha_ratio=float(lora["alpha_ratio"]),
                dropout=float(lora["dropout"]),
                init=lora.get("init", "default"),
                alpha_rank=int(lora.get("alpha_rank", 0)),
            ),
            ia3=frozenset(parse_place_key(k) for k in data.get("ia3", ())),
            serial_adapter={int(k): int(v) for k, v in data.get("serial_adapter", {}).items()},
            parallel_adapter={int(k): int(v) for k, v in parallel.get("sizes", {}).items()},
            parallel_scale=float(parallel.get("scale", 4.0)),
            prefix={int(k): int(v) for k, v in data.get("prefix", {}).items()},
            tuner=None
            if tuner is None
            else TunerModules(
                method=tuner["method"],
                size=int(tuner["size"]),
                places=frozenset(parse_place_key(k) for k in tuner["places"]),
                settings={name: float(value) for name, value in tuner.get("settings", {}).items()},
            ),
            sparse=None
            if sparse is None
            else SparseDeltas({parse_place_key(k): int(n) for k, n in sparse["entries"].items()}, sparse["rule"]),
            schedule=LayerSchedule.from_json(data["schedule"]) if "schedule" in data else None,
        )

