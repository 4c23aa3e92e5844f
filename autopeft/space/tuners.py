"""The peft tuners a ``method`` space can choose, declared once for the space, the injector and export.

Each :class:`TunerMethod` names the peft config class, the config field its one searched size
sets (a rank, a block size, a number of frequencies) and the fixed settings autopeft uses. The
exact trainable count of a tuner on one weight matrix depends only on the method, the size and the
matrix shape, so it is measured once by building that one matrix with peft on the meta device
(no memory, milliseconds) and cached; a structure's count is the sum over its matrices. Methods
whose trainable state is shared between matrices (VB-LoRA's vector bank, TinyLoRA) are not offered:
their count would not be a sum, and peft refuses to inject them outside a ``PeftModel``.

A size a method cannot take on a matrix (an OFT block that does not divide the input width, a
Conv1D matrix a tuner does not support) makes peft raise while building; :func:`matrix_params`
returns None for it, and points that need it are infeasible instead of crashing a trial.

Two methods are not peft tuners on weight matrices:

- ``ln_tuning`` trains copies of the layer norms of the chosen layers (peft's ``LNTuningConfig``);
  its places use the role :data:`NORMS`.
- ``bias`` trains the existing biases of the chosen matrices (BitFit restricted to them); peft has
  no such tuner, so it is injected natively and exports only to ``--format autopeft``.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from autopeft.space.layout import MatrixShape
from autopeft.space.structure import Structure

NORMS = "norms"
"""The role of ln_tuning places: every normalisation module of the layer."""


@dataclass(frozen=True)
class TunerMethod:
    """One peft tuner on weight matrices.

    Attributes:
        config_class: the peft config class name (``LoHaConfig``).
        size_field: the config field the searched size sets, or None for a method without one.
        settings: fixed config fields; ``alpha_ratio`` entries scale with the size
            (``{"alpha": 2.0}`` means alpha = 2 * size, the constant scaling used for LoRA), and
            ``rank_ratio`` entries too, rounded to an integer.
        mask: for SHiRA, the rule that picks the trained entries (:mod:`autopeft.space.sparse_masks`);
            a rule of :data:`MEASURED_MASKS` ranks entries on task data, measured once per job.
        scheduled: the method changes itself during training on a schedule of the run's length
            (AdaLoRA prunes ranks), so its config needs the run's total steps and its training
            loop a call after every optimizer step.
        searchable: numeric config fields a space may search beside the size (a structure's
            :attr:`~autopeft.space.structure.TunerModules.settings`).
    """

    config_class: str
    size_field: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    alpha_ratio: dict[str, float] = field(default_factory=dict)
    rank_ratio: dict[str, float] = field(default_factory=dict)
    mask: str | None = None
    scheduled: bool = False
    searchable: tuple[str, ...] = ()


SHIRA_RANDOM = TunerMethod("ShiraConfig", "r", {"random_seed": 0})
"""peft's random SHiRA mask with a fixed seed: a reload (and a peft export) rebuilds the same entries."""

TUNER_METHODS: dict[str, TunerMethod] = {
    "loha": TunerMethod("LoHaConfig", "r", alpha_ratio={"alpha": 2.0}),
    "lokr": TunerMethod("LoKrConfig", "r", alpha_ratio={"alpha": 2.0}),
    "vera": TunerMethod("VeraConfig", "r", {"save_projection": True}),
    "randlora": TunerMethod("RandLoraConfig", "r", {"save_projection": True}),
    "oft": TunerMethod("OFTConfig", "oft_block_size", {"r": 0}),
    "boft": TunerMethod("BOFTConfig", "boft_block_size", {"boft_n_butterfly_factor": 1}),
    "hra": TunerMethod("HRAConfig", "r"),
    # A zero spectrum starts at the base model; peft's default (a standard normal spectrum times
    # the scaling, 150) perturbs every matrix by an amount that grows as the matrix shrinks: on
    # SmolLM2 it raised the dev loss from 1.87 to 2.42 before training (bench/method_probes.py).
    # The update stays linear in the coefficients, so a zero start still trains.
    "fourierft": TunerMethod("FourierFTConfig", "n_frequency", {"init_weights": True}),
    "waveft": TunerMethod("WaveFTConfig", "n_frequency"),
    "c3a": TunerMethod("C3AConfig", "block_size"),
    "miss": TunerMethod("MissConfig", "r"),
    "shira": SHIRA_RANDOM,
    "sparse_random": SHIRA_RANDOM,  # HFT-style random subsets: SHiRA's own rule, named with the other sparse rules
    "sparse_magnitude": TunerMethod("ShiraConfig", "r", {"mask_type": "magnitude"}, mask="magnitude"),
    "sparse_principal": TunerMethod("ShiraConfig", "r", {"mask_type": "principal"}, mask="principal"),
    "sparse_sensitivity": TunerMethod("ShiraConfig", "r", {"mask_type": "sensitivity"}, mask="sensitivity"),
    "sparse_lottery": TunerMethod("ShiraConfig", "r", {"mask_type": "lottery"}, mask="lottery"),
    # The bound lambda is searchable (peft's default 15 when a space does not search it). B starts at
    # zero, so after one step DeLoRA's update jumps to lambda / r times the weight's column norms
    # whatever the rate: on SmolLM2 lambda 15 ended a 12-step proxy at dev loss 2.64 from 1.87.
    # lambda 1 fixed SmolLM2 (1.80) but cost MiniLM/SST-2 about 7 points in the methods table
    # (bench/results/methods_table_delora_lambda1.csv): no fixed bound suits both models.
    "delora": TunerMethod("DeloraConfig", "r", searchable=("delora_lambda",)),
    "hira": TunerMethod("HiraConfig", "r"),
    "gralora": TunerMethod("GraloraConfig", "r"),
    "ln_tuning": TunerMethod("LNTuningConfig", None),
    # The size is AdaLoRA's target (mean final) rank; every module starts at 1.5x it, as peft's
    # defaults do (init_r 12, target_r 8), with alpha = 2 * init_r, the constant scaling of LoRA.
    "adalora": TunerMethod("AdaLoraConfig", "target_r", rank_ratio={"init_r": 1.5}, alpha_ratio={"lora_alpha": 3.0},
                           scheduled=True),
}
"""peft tuners offered by ``method`` spaces, by the name a space uses."""

NATIVE_METHODS = ("bias",)

LORA_RATE = 3e-3
SPARSE_DELTAS = "sparse_deltas"
"""The module kind of native sparse deltas (:class:`~autopeft.space.structure.SparseDeltas`)."""
ENTRY_KINDS = (*(name for name, method in TUNER_METHODS.items() if method.config_class == "ShiraConfig"),
               SPARSE_DELTAS)
"""Kinds that train chosen entries of a weight: SHiRA and its rules (peft's SHiRA layers) and native
sparse deltas, which train identically to SHiRA on the same entries at the same rate
(docs/sparse_types.md), so they share SHiRA's measured rate."""
RATES_AT_LORA_3E3: dict[str, float] = {
    "loha": 2e-2, "lokr": 2e-2, "hira": 2e-2, "hra": 2e-2, "fourierft": 2e-2, "adalora": 2e-2,
    "ln_tuning": 2e-2, "bias": 2e-2,
    **dict.fromkeys(ENTRY_KINDS, 2e-2),
    "ia3": 1.2e-1, "c3a": 1.2e-1, "vera": 1.2e-1,
    "waveft": 5e-4, "randlora": 5e-4,
}  # fmt: skip
"""The learning rate each module kind trained best at where LoRA's best was ``LORA_RATE``: chosen
on SST-2's search split with MiniLM by bench/methods_table.py (docs/methods_table.md) from rates
about 6x apart. Kinds not listed (the LoRA family, OFT, BOFT, MiSS, DeLoRA, GraLoRA, adapters,
prefixes, the head) trained best at LoRA's rate or were not measured. The kinds of
:data:`ENTRY_KINDS` share SHiRA's measured rate."""


def rate_factor(kind: str) -> float:
    """The factor by which ``kind``'s parameters scale a run's learning rate: one shared rate would
    compare rates rather than methods (at LoRA's rate, LoHa, FourierFT and C3A barely move in a proxy)."""
    return RATES_AT_LORA_3E3.get(kind, LORA_RATE) / LORA_RATE


def adapter_rate_factor(structure: Structure) -> float:
    """The factor of a structure one peft adapter holds: its tuner, IA3, or the LoRA family."""
    return rate_factor(structure.tuner.method if structure.tuner else "ia3" if structure.ia3 else "lora")


MEASURED_MASKS = ("sensitivity", "lottery")
"""SHiRA mask rules whose entries come from a measurement on task data (SPT's accumulated squared
gradients; LT-SFT's movement in a dense warm-up), not from the weight alone."""


def measured_mask(method: str) -> str | None:
    """The measured mask rule ``method`` trains entries by, or None."""
    spec = TUNER_METHODS.get(method)
    return spec.mask if spec is not None and spec.mask in MEASURED_MASKS else None


def ranking_rule(structure: Structure) -> str | None:
    """The measured rule whose entry ranking ``structure`` trains by (its SHiRA tuner's or its
    sparse deltas'), or None; ValueError when the two would need different rankings."""
    rules = {measured_mask(structure.tuner.method) if structure.tuner is not None else None,
             structure.sparse.rule if structure.sparse is not None else None} & set(MEASURED_MASKS)
    if len(rules) > 1:
        raise ValueError(f"a structure trains entries by one measured ranking, not {' and '.join(sorted(rules))}")
    return next(iter(rules), None)


def method_names() -> tuple[str, ...]:
    return (*TUNER_METHODS, *NATIVE_METHODS)


def peft_config(
    method: str, size: int, target_modules: Iterable[str], *, settings: Mapping[str, float] = MappingProxyType({}),
    conv1d: bool = False, total_steps: int | None = None, mask_fn=None, **extra,
):
    """The peft config of ``method`` at ``size`` on the named modules, with the searched
    ``settings`` (fields of ``TunerMethod.searchable``); ``extra`` goes to the config.

    ``total_steps`` is the training run's length, which a scheduled method (AdaLoRA) needs;
    ValueError when it needs it and it is missing. ``mask_fn`` picks a measured rule's entries
    (see :func:`autopeft.space.sparse_masks.entries_mask`); ValueError when it needs one and it is missing.
    """
    import peft

    spec = TUNER_METHODS[method]
    fields: dict[str, Any] = {
        **spec.settings,
        **{name: ratio * size for name, ratio in spec.alpha_ratio.items()},
        **_scaled_ranks(spec, size),
    }
    if spec.size_field is not None:
        fields[spec.size_field] = size
    fields.update(settings)
    if conv1d:
        fields["fan_in_fan_out"] = True
    if spec.scheduled:
        fields.update(rank_schedule(method, total_steps))
    with quiet_peft_tuners():
        config = getattr(peft, spec.config_class)(target_modules=sorted(target_modules), **fields, **extra)
    if spec.mask in MEASURED_MASKS:
        if mask_fn is None:
            raise ValueError(f"{method} trains entries ranked on task data: give the measured entries")
        config.mask_fn = mask_fn
    elif spec.mask is not None:
        from autopeft.space.sparse_masks import MASK_FUNCTIONS

        config.mask_fn = MASK_FUNCTIONS[spec.mask]
    return config


def _scaled_ranks(spec: TunerMethod, size: int) -> dict[str, int]:
    """The config's integer fields that scale with the size (``rank_ratio``)."""
    return {name: max(1, round(ratio * size)) for name, ratio in spec.rank_ratio.items()}


def rank_schedule(method: str, total_steps: int | None) -> dict[str, int]:
    """AdaLoRA's schedule over a run of ``total_steps``: the first 10% train at the initial ranks,
    the budget then shrinks until the last 20%, which train at the final ranks."""
    if total_steps is None or total_steps < 1:
        raise ValueError(f"{method} prunes ranks on a schedule of the run's length: give its total steps")
    return {"total_step": total_steps, "tinit": total_steps // 10, "tfinal": total_steps // 5}


def matrix_params(method: str, size: int, shape: MatrixShape,
                  settings: Mapping[str, float] = MappingProxyType({})) -> int | None:
    """Trainable parameters ``method`` at ``size`` (and searched ``settings``) adds on one matrix of
    ``shape``; None if it cannot."""
    if method == "bias":
        return shape.out_features if shape.bias else None
    spec = TUNER_METHODS.get(method)
    if method == "adalora":
        # A (r x in), B (out x r) and E (r); a meta-device build would also count its rank
        # counter, which peft freezes only on a real device
        initial_rank = _scaled_ranks(spec, size)["init_r"]
        return initial_rank * (shape.in_features + shape.out_features + 1)
    if spec is not None and spec.config_class == "ShiraConfig":
        # SHiRA's masks need real tensors (torch.nonzero, top-k): r * (in + out) entries train
        entries = size * (shape.in_features + shape.out_features)
        return entries if 0 < entries <= shape.numel and not shape.conv1d else None  # nn.Linear only
    unnamed = MatrixShape("matrix", shape.in_features, shape.out_features, shape.conv1d, shape.bias)
    return _built_count(method, size, unnamed, tuple(sorted(settings.items())))


@functools.lru_cache(maxsize=4096)
def _built_count(method: str, size: int, shape: MatrixShape, settings: tuple[tuple[str, float], ...]) -> int | None:
    """Counted on one matrix built on the meta device; cached per shape (the name is always ``matrix``)."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    with torch.device("meta"):
        holder = nn.Module()
        holder.matrix = (
            Conv1D(shape.out_features, shape.in_features)
            if shape.conv1d
            else nn.Linear(shape.in_features, shape.out_features, bias=shape.bias)
        )
    before = {id(p) for p in holder.parameters()}
    try:
        # A schedule's length changes no parameter count
        config = peft_config(method, size, ["matrix"], settings=dict(settings), conv1d=shape.conv1d, total_steps=100)
        build_tuner(holder, config, "count")
    except (ValueError, TypeError, RuntimeError, NotImplementedError, AssertionError):
        return None
    if not isinstance(holder.matrix, BaseTunerLayer):
        return None
    return sum(p.numel() for p in holder.parameters() if id(p) not in before)


@contextlib.contextmanager
def quiet_peft_tuners():
    """Silence peft's tuner notes that would repeat for every trial: BOFT's missing CUDA kernel,
    LN tuning's "unsupported" norms (both work on CPU), and SHiRA's unknown ``mask_type`` for
    autopeft's own mask rules (their mask function is set right after)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"peft\.tuners\.")
        yield


def build_tuner(model, config, adapter_name: str):
    """Wrap the matrices ``config`` targets in ``model`` with its tuner's layers, in place.

    Calls peft's tuner class directly rather than ``inject_adapter_in_model``, which refuses
    tuners that keep shared state on the tuner object (VeRA's and RandLoRA's frozen random
    projections): the wrapped layers hold references to that state, so they work without it.
    Returns the tuner object: AdaLoRA's holds its rank allocator and orthogonality penalty.
    """
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    with quiet_peft_tuners():
        tuner = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type](model, config, adapter_name=adapter_name)
    # peft leaves its config on the model; autopeft keeps the structure itself, and a second
    # tuner on the same model (IA3 after LoRA) would read it as an existing adapter.
    del model.peft_config
    return tuner
