"""The YAML schema of a search space, validated with pydantic.

Every validation error becomes one line naming the file, the key path and what was expected::

    search_spaces/bad.yaml: modules.lora.rank.choices: Input should be a valid integer (got 'eight')

A shipped space can be named without its path (``lora`` for ``search_spaces/lora.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from autopeft.bundled import search_spaces_dir
from autopeft.errors import SpaceError
from autopeft.space.structure import LoraInit, LoraVariant

Granularity = Literal["global", "layer", "role", "placement"]
"""How many independent values a searched setting has: one for the whole model, one per layer,
one per role (shared by all layers), or one per (layer, role) placement."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _size_choice(value: object) -> int | str:
    if value == "hidden" or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError("expected an integer size or 'hidden'")


SizeChoice = Annotated[int | str, PlainValidator(_size_choice)]


class Sizes(_Strict):
    """Searched sizes (ranks, bottleneck sizes, prefix lengths); 0 means the module is off.

    ``hidden`` stands for the model's hidden size; numbers above it are dropped when the space is
    bound to a model, so one file serves models of different widths.
    """

    choices: list[SizeChoice] = Field(min_length=1)
    per: Granularity = "global"

    @field_validator("choices")
    @classmethod
    def _sorted_non_negative(cls, choices: list[int | str]) -> list[int | str]:
        numbers = [c for c in choices if c != "hidden"]
        if any(c < 0 for c in numbers):
            raise ValueError("sizes must be >= 0 (0 switches the module off)")
        if len(set(choices)) != len(choices):
            raise ValueError("sizes must not repeat")
        return sorted(numbers) + [c for c in choices if c == "hidden"]

    def resolve(self, hidden: int) -> list[int]:
        """The choices for a model whose hidden size is ``hidden``."""
        numbers = {c for c in self.choices if c != "hidden" and c <= hidden}
        if "hidden" in self.choices:
            numbers.add(hidden)
        return sorted(numbers)


class LoraSpec(_Strict):
    """LoRA-family modules on weight matrices chosen by role."""

    roles: list[str] = Field(min_length=1)
    search_roles: bool = False
    rank: Sizes
    variants: list[LoraVariant] = Field(default=["lora"], min_length=1)
    inits: list[LoraInit] = Field(default=["default"], min_length=1)
    alpha_ratio: float = Field(default=2.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)


class IA3Spec(_Strict):
    """IA3 scaling vectors; ``per`` sets the granularity of their on/off switches."""

    roles: list[str] = Field(min_length=1)
    per: Granularity = "global"
    searched: bool = True


class LayerSizes(Sizes):
    per: Literal["global", "layer"] = "global"


class AdapterSpec(_Strict):
    """Serial bottleneck adapter after each FFN (Pfeiffer placement)."""

    size: LayerSizes


class ParallelAdapterSpec(AdapterSpec):
    """Parallel bottleneck adapter beside each FFN, its output multiplied by ``scale``."""

    scale: float = Field(default=4.0, gt=0)


class PrefixSpec(_Strict):
    """Learned key/value prefixes in each attention layer."""

    length: LayerSizes


class LayersSpec(_Strict):
    """Which layers may carry modules, and whether a per-layer on/off mask is searched.

    With ``groups: G`` the eligible layers are split into G contiguous groups that share every
    per-layer dimension (mask, ranks, sizes), which keeps deep models searchable.
    """

    include: list[int] | None = None
    mask: bool = False
    groups: int | None = Field(default=None, ge=1)

    @field_validator("include")
    @classmethod
    def _non_negative(cls, include: list[int] | None) -> list[int] | None:
        if include is not None and (not include or any(i < 0 for i in include)):
            raise ValueError("layer indices must be a non-empty list of integers >= 0")
        return include


class ArchitectureSpec(_Strict):
    """A model layout declared by hand, for families the registry does not know."""

    layers: list[str] = Field(min_length=1)
    roles: dict[str, str | list[str]] = Field(min_length=1)
    ffn_input: str | None = None
    ffn_output: str | None = None
    feedforward_roles: list[str] = []


class Range(_Strict):
    """A searched continuous setting between ``low`` and ``high`` (equal bounds: a constant)."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class SensitivitySettings(_Strict):
    """How SPT gradients and IST loss probes are measured (once per model, task and settings)."""

    batches: int = Field(default=16, ge=1)
    batch_size: int = Field(default=32, ge=1)
    ist_steps: int = Field(default=50, ge=1)
    ist_probe_batches: int = Field(default=4, ge=1)


class BudgetSpec(_Strict):
    """Sensitivity-aware allocation (SPT / IST): a few searched numbers become per-matrix LoRA ranks.

    ``fraction`` is the total trainable budget as a fraction of the model's parameters (searched on
    a log scale); ``rules`` the allocation rules; ``sharpness`` how strongly ranks follow the
    scores (0 = equal ranks).
    """

    fraction: Range
    rules: list[Literal["uniform", "spt", "spt_sparse", "ist"]] = Field(default=["uniform", "spt", "ist"], min_length=1)
    sharpness: Range = Range(low=0.0, high=2.0)
    roles: list[str] = Field(min_length=1)
    variants: list[LoraVariant] = Field(default=["lora"], min_length=1)
    alpha_ratio: float = Field(default=2.0, gt=0)
    switch_factor: float = Field(default=10.0, gt=0)
    sensitivity: SensitivitySettings = SensitivitySettings()

    @model_validator(mode="after")
    def _positive_budget(self) -> BudgetSpec:
        if self.fraction.low <= 0 or self.fraction.high > 1:
            raise ValueError("fraction must lie in (0, 1]")
        if self.sharpness.low < 0:
            raise ValueError("sharpness must be >= 0")
        return self


class GlobalSizes(Sizes):
    per: Literal["global"] = "global"


class SettingChoices(_Strict):
    """Values a searched peft config field may take (an ordered dimension, in the file's order)."""

    choices: list[float] = Field(min_length=1)


class MethodChoice(_Strict):
    """One peft method a ``methods`` space may pick, with its searched sizes (none for IA3, LN
    tuning and bias) and any other searched config fields the method allows (DeLoRA's
    ``delora_lambda``)."""

    size: GlobalSizes | None = None
    settings: dict[str, SettingChoices] = Field(default_factory=dict)


class MethodsSpec(_Strict):
    """A choice of peft method (LoRA, DoRA, LoHa, OFT, ...) on weight matrices chosen by role.

    ``choices`` maps a method name to its sizes; every method acts on the same roles and layers.
    """

    roles: list[str] = Field(min_length=1)
    search_roles: bool = False
    choices: dict[str, MethodChoice] = Field(min_length=1)
    alpha_ratio: float = Field(default=2.0, gt=0)


class ModulesSpec(_Strict):
    lora: LoraSpec | None = None
    ia3: IA3Spec | None = None
    serial_adapter: AdapterSpec | None = None
    parallel_adapter: ParallelAdapterSpec | None = None
    prefix: PrefixSpec | None = None
    methods: MethodsSpec | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> ModulesSpec:
        declared = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if not declared:
            raise ValueError(f"declare at least one module type ({', '.join(type(self).model_fields)})")
        if self.methods is not None and len(declared) > 1:
            raise ValueError("methods already chooses the module type; declare no other module type beside it")
        return self


class ScheduleSpec(_Strict):
    """Layer schedules searched on top of the structure (LISA / IST): ``none`` trains every layer
    at every step."""

    kinds: list[Literal["none", "lisa", "ist"]] = Field(default=["none", "lisa"], min_length=1)
    active: list[int] = Field(default=[2], min_length=1)
    period: list[int] = Field(default=[10], min_length=1)

    @field_validator("active", "period")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values) or len(set(values)) != len(values):
            raise ValueError("expected distinct integers >= 1")
        return sorted(values)


class SpaceSpec(_Strict):
    """A whole search space file."""

    name: str
    description: str = ""
    architecture: ArchitectureSpec | None = None
    layers: LayersSpec = LayersSpec()
    modules: ModulesSpec | None = None
    budget: BudgetSpec | None = None
    schedule: ScheduleSpec | None = None
    max_trainable_fraction: float | None = Field(default=None, gt=0, le=1)
    source: str = Field(default="<inline>", exclude=True)

    @model_validator(mode="after")
    def _modules_or_budget(self) -> SpaceSpec:
        if (self.modules is None) == (self.budget is None):
            raise ValueError("declare either modules (searched module types and sizes) or budget (allocated LoRA)")
        return self


def shipped_spaces() -> dict[str, Path]:
    """Name -> file of every space shipped in ``search_spaces/``."""
    return {path.stem: path for path in sorted(search_spaces_dir().glob("*.yaml"))}


def load_space_spec(name_or_path: str) -> SpaceSpec:
    """Read and validate a space file, or a shipped space by name."""
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        shipped = shipped_spaces()
        if name_or_path not in shipped:
            names = ", ".join(sorted(shipped))
            raise SpaceError(f"space file not found: {name_or_path} (shipped spaces: {names})")
        path = shipped[name_or_path]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_space(text, source=str(path))


def parse_space(text: str, source: str = "<inline>") -> SpaceSpec:
    """Validate YAML text; every error is one line that starts with ``source``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(f"{source}: {where}malformed YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: expected a mapping with keys name and modules, got {type(data).__name__}")
    try:
        return SpaceSpec.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise SpaceError(_one_line(source, exc)) from exc


def _one_line(source: str, exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    got = "" if first["type"] == "missing" else f" (got {_short(first['input'])})"
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return f"{source}: {key}: {message}{got}{more}"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
