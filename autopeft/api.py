"""Using an exported structure in your own training loop.

::

    import autopeft
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    applied = autopeft.apply(model, "export-dir")        # or a path to autopeft_config.json
    optimizer = torch.optim.AdamW(applied.parameters, lr=1e-3)
    ...                                                   # train model as usual
    autopeft.save_adapter(applied, "adapter-dir")
    applied = autopeft.load_adapter(fresh_model, "adapter-dir")

:func:`apply` puts every module type of an autopeft config into the model (LoRA-family and IA3
through peft, bottleneck adapters and prefixes by hand), freezes the rest but the task head, and
checks that the model is the one the config was made for.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from autopeft.errors import ExportError
from autopeft.export.autopeft_format import CONFIG_NAME, AutopeftConfig, layout_on
from autopeft.injection import AppliedStructure

WEIGHTS_NAME = "autopeft_adapter.safetensors"
# Hand-written modules (adapters, prefixes) live outside the model; their tensors are saved
# under this prefix, the others under their parameter names in the model.
NATIVE_PREFIX = "autopeft_native."


class AppliedConfig(AppliedStructure):
    """An :class:`AppliedStructure` that remembers the config it was applied from."""

    def __init__(self, model: nn.Module, config: AutopeftConfig, total_steps: int | None = None) -> None:
        structure, layout = config.structure, layout_on(model, config.layout)
        measured = config.lora_init.for_lora(structure.lora) if config.lora_init is not None else None
        entries = config.sparse_entries.entries_for(structure, layout) if config.sparse_entries else None
        super().__init__(model, structure, layout, measured, total_steps, entries)
        self.config = config


def apply(model: nn.Module, config: AutopeftConfig | str | Path, total_steps: int | None = None) -> AppliedConfig:
    """Insert the structure of ``config`` (an :class:`AutopeftConfig`, a config file or its folder)
    into ``model``; ExportError when the model lacks a named module or the parameter count differs.

    AdaLoRA prunes ranks on a schedule of the run's length: give ``total_steps``, and call
    ``applied.after_optimizer_step(step)`` after every optimizer step, before clearing gradients.
    """
    if not isinstance(config, AutopeftConfig):
        config = AutopeftConfig.load(config)
    try:
        applied = AppliedConfig(model, config, total_steps)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if applied.num_trainable != config.trainable_params:
        applied.remove()
        raise ExportError(
            f"the structure has {applied.num_trainable:,} trainable parameters on this model and "
            f"{config.trainable_params:,} on the config's base model {config.base_model} "
            "(is the task head the same?)"
        )
    return applied


def save_adapter(applied: AppliedConfig, directory: str | Path) -> Path:
    """Write the config and every trainable tensor (modules and head) into ``directory``."""
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    applied.config.save(directory)
    save_file(_trainable_tensors(applied), str(directory / WEIGHTS_NAME))
    return directory


def load_adapter(model: nn.Module, directory: str | Path) -> AppliedConfig:
    """Apply the config saved in ``directory`` to ``model`` and load the trained tensors into it."""
    directory = Path(directory).expanduser()
    applied = apply(model, directory / CONFIG_NAME)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        applied.remove()
        raise ExportError(f"no {WEIGHTS_NAME} in {directory}")
    saved = load_file(str(weights))
    expected = _trainable_tensors(applied)
    if set(saved) != set(expected) or any(saved[k].shape != expected[k].shape for k in expected):
        applied.remove()
        raise ExportError(f"{weights} does not hold the tensors of its config's structure")
    with torch.no_grad():
        for name, tensor in _named_trainable(applied).items():
            tensor.copy_(saved[name])
    return applied


def _named_trainable(applied: AppliedConfig) -> dict[str, nn.Parameter]:
    trainable = {id(p) for p in applied.parameters}
    named = {name: p for name, p in applied.model.named_parameters() if id(p) in trainable}
    named.update({NATIVE_PREFIX + name: p for name, p in applied.native.named_parameters()})
    return named


def _trainable_tensors(applied: AppliedConfig) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous().cpu() for name, p in _named_trainable(applied).items()}
