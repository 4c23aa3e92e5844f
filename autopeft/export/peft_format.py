"""``--format peft``: an ``adapter_config.json`` written by peft's own config class.

A single peft adapter holds one tuner: a LoRA-family structure becomes a ``LoraConfig``, a pure
IA3 structure an ``IA3Config``, and another peft method (LoHa, VeRA, OFT, ...) its own config
class. Anything else (bottleneck adapters, prefixes, trained biases, two tuner types together) is
refused with the reason and a pointer to ``--format autopeft``. The config is
validated on the real base model before anything is written.

What a config cannot say travels beside it in peft's own file formats: EVA's vectors
(``eva_state_dict.safetensors``), CorDA's triplets (``corda_cache.pt``, peft's CorDA cache), and
SHiRA entries chosen by a rule peft does not ship (``adapter_model.safetensors`` with the indices).
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftConfig, TaskType
from safetensors.torch import save_file

from autopeft.errors import ExportError
from autopeft.export.source import ExportSource
from autopeft.export.validation import validate_on_base_model
from autopeft.injection.apply import entries_mask
from autopeft.injection.peft_modules import ia3_config, lora_config, tuner_config
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import Structure
from autopeft.space.tuners import TUNER_METHODS
from autopeft.tasks import TaskKind

# Module types that no peft adapter config can hold, and why.
_WHY_NOT_PEFT = {
    "serial_adapter": "serial bottleneck adapters (peft has no bottleneck adapters)",
    "parallel_adapter": "parallel bottleneck adapters (peft has no bottleneck adapters)",
    "prefix": "per-layer prefixes (peft's prefix tuning puts one length on every layer)",
    "sparse": "sparse updates with their own entry count per matrix (peft's SHiRA trains r * (in + out) "
              "entries and cannot share a matrix with LoRA)",
}
PEFT_TUNER_TYPES = ("lora", "ia3", "tuner")


def _label(structure: Structure, module_type: str) -> str:
    return {"lora": "LoRA", "ia3": "IA3"}.get(module_type) or structure.tuner.method


def peft_task_type(kind: TaskKind) -> TaskType:
    """peft's task type for a task kind; SEQ_CLS also trains the classifier head in full."""
    return TaskType.CAUSAL_LM if kind is TaskKind.CAUSAL_LM else TaskType.SEQ_CLS


def _why_not_peft(structure: Structure) -> list[str]:
    blocked = [why for name, why in _WHY_NOT_PEFT.items() if name in structure.module_types]
    tuners = [_label(structure, name) for name in structure.module_types if name in PEFT_TUNER_TYPES]
    if len(tuners) > 1:
        blocked.append(f"{' mixed with '.join(tuners)} (one peft adapter holds one tuner type)")
    if structure.tuner is not None and structure.tuner.method == "bias":
        blocked.append("trained biases alone (peft has no bias-only tuner)")
    if structure.is_empty:
        blocked.append("no module at all")
    return blocked


def fits_one_peft_adapter(structure: Structure) -> bool:
    """Whether one peft config (LoRA family, IA3, or another peft tuner) holds the whole structure."""
    return not _why_not_peft(structure)


def peft_config_for(
    structure: Structure, layout: ModelLayout, kind: TaskKind, hub_id: str, total_steps: int | None = None
) -> PeftConfig:
    """The one peft config that rebuilds ``structure``; ExportError saying why when there is none.

    ``total_steps`` is the training run's length, for a method that prunes on a schedule (AdaLoRA).
    A SHiRA tuner whose entries come from a measurement gets a placeholder mask function: only an
    export that holds the measurement and the model can bind it (see :func:`write_peft`).
    """
    blocked = _why_not_peft(structure)
    if blocked:
        raise ExportError(f"a single peft adapter cannot hold {'; '.join(blocked)}; export it with --format autopeft")
    extra = {"task_type": peft_task_type(kind), "base_model_name_or_path": hub_id}
    if structure.lora is not None:
        return lora_config(structure.lora, layout, **extra)
    if structure.tuner is not None:
        return tuner_config(structure.tuner, layout, total_steps=total_steps, mask_fn=_entries_not_bound, **extra)
    return ia3_config(structure.ia3, layout, **extra)


def peft_config_of(source: ExportSource) -> PeftConfig:
    """The peft config of an export source's trial (not yet validated); a scheduled method
    (AdaLoRA) gets the trial's own schedule, over its proxy steps."""
    try:
        return peft_config_for(source.structure, source.layout, source.task_kind, source.hub_id,
                               source.trial.fidelity.get("steps"))
    except ExportError as refused:
        raise ExportError(f"{source.describe()}: {refused}") from None


EVA_STATE_NAME = "eva_state_dict.safetensors"
"""Beside an EVA-initialised LoRA config: peft's ``eva_state_dict`` for
``initialize_lora_eva_weights(peft_model, eva_state_dict=load_file(...))``."""
CORDA_CACHE_NAME = "corda_cache.pt"
"""Beside a CorDA-initialised LoRA config, named by its ``corda_config.cache_file``: the triplets in
the file format of peft's CorDA cache, which ``preprocess_corda(base_model, config)`` loads (with
the path made absolute) before ``get_peft_model``."""


def _entries_not_bound(base_layer, r, **_):
    raise ExportError("a SHiRA mask over measured entries is bound to the base model only while exporting")


def write_peft(source: ExportSource, out_dir: Path) -> list[Path]:
    config = peft_config_of(source)
    if _masked_by_rule(source.structure):
        return _write_shira_by_rule(source, config, out_dir)
    init = source.lora_init.init if source.lora_init is not None else None
    written = [out_dir / "adapter_config.json"]
    prepare = None
    if init == "eva":
        written.append(_write_eva_state(source, out_dir / EVA_STATE_NAME))
    elif init == "corda":
        written.append(_write_corda_cache(source, out_dir / CORDA_CACHE_NAME))
        prepare = _corda_preprocess(written[-1])
    validate_on_base_model(config, source, prepare=prepare)
    if init == "corda":
        config.corda_config.cache_file = CORDA_CACHE_NAME  # relative: the loader joins it to the folder
    config.save_pretrained(str(out_dir))
    return written


def _masked_by_rule(structure: Structure) -> bool:
    tuner = structure.tuner
    return tuner is not None and tuner.method in TUNER_METHODS and TUNER_METHODS[tuner.method].mask is not None


def _write_shira_by_rule(source: ExportSource, config: PeftConfig, out_dir: Path) -> list[Path]:
    """A SHiRA adapter over entries chosen by a rule peft does not ship (magnitude, principal, or
    a measured ranking): its config names the rule as ``mask_type``, and ``adapter_model.safetensors``
    holds the zero-initialised update with its ``shira_indices``, which peft restores on load, so
    ``PeftModel.from_pretrained(base, folder, is_trainable=True)`` trains exactly the trial's entries."""
    model = validate_on_base_model(config, source, prepare=_bind_measured_entries(source))
    model.save_pretrained(str(out_dir))
    return [out_dir / "adapter_config.json", out_dir / "adapter_model.safetensors"]


def _bind_measured_entries(source: ExportSource):
    """Binds the trial's measured entries to the modules of the base model the check builds on."""
    if source.ranking is None:
        return None
    entries = source.ranking.entries_for(source.structure, source.layout)

    def prepare(model, config) -> None:
        config.mask_fn = entries_mask(model, source.layout, source.structure.tuner.places, entries)

    return prepare


def _write_eva_state(source: ExportSource, path: Path) -> Path:
    """The trial's EVA A per module, named as in a ``PeftModel`` (peft's loader matches those names)."""
    initial = source.lora_init.for_lora(source.structure.lora)
    tensors = {f"base_model.model.{source.layout.matrix(*place).name}": parts["A"].contiguous()
               for place, parts in initial.items()}
    save_file(tensors, str(path))
    return path


def _write_corda_cache(source: ExportSource, path: Path) -> Path:
    """The trial's CorDA triplets keyed and shaped as peft's cache: ``<module>.eigens.S_WC`` (r,),
    ``U_WC`` (out, r) and ``V_WC`` (in, r), by the module's name in the base model."""
    initial = source.lora_init.for_lora(source.structure.lora)
    cache = {}
    for place, parts in initial.items():
        name = source.layout.matrix(*place).name
        cache |= {f"{name}.eigens.S_WC": parts["S"].contiguous(), f"{name}.eigens.U_WC": parts["U"].T.contiguous(),
                  f"{name}.eigens.V_WC": parts["V"].T.contiguous()}
    torch.save(cache, path)
    return path


def _corda_preprocess(cache: Path):
    """What a user runs on the base model before ``get_peft_model``: peft's CorDA preprocessing,
    reading the written cache (so the check loads the very file the export ships)."""
    from peft.tuners.lora.corda import preprocess_corda

    def prepare(model, built: PeftConfig) -> None:
        built.corda_config.cache_file = str(cache)
        preprocess_corda(model, built)

    return prepare


_LOADABLE_BY_PEFT = {
    "eva": "--format peft (adapter_config.json plus eva_state_dict.safetensors) or --format autopeft",
    "corda": "--format peft (adapter_config.json plus corda_cache.pt for preprocess_corda) or --format autopeft",
}
"""Data-driven inits a peft export carries, and how."""


def refuse_beyond_config(source: ExportSource, fmt: str) -> None:
    """ExportError when the trial needs more than a peft config, which ``fmt`` is: LoRA started from
    a measurement (EVA, CorDA), or SHiRA entries chosen by a rule peft does not ship."""
    lora = source.structure.lora
    if lora is not None and lora.starts_from_measurement:
        raise ExportError(
            f"{source.describe()} starts LoRA from its {lora.init} measurement, which {fmt} cannot load; export "
            f"it with {_LOADABLE_BY_PEFT.get(lora.init, '--format autopeft')}"
        )
    if _masked_by_rule(source.structure):
        rule = TUNER_METHODS[source.structure.tuner.method].mask
        raise ExportError(
            f"{source.describe()} trains SHiRA entries chosen by {rule}, which {fmt} cannot rebuild from a config; "
            "export it with --format peft (the adapter with its entries) or --format autopeft"
        )
