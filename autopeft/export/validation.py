"""Checking a PEFT config on the real base model before any file is written.

Every format that a stack turns into a peft config is checked by building that config with peft
on the job's real base model: peft must wrap exactly the trial's modules and report exactly the
trial's trainable parameters (task head included).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

from peft import PeftConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from autopeft.errors import ExportError
from autopeft.export.source import ExportSource
from autopeft.models import load_base_model
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import Structure


def adapted_module_names(structure: Structure, layout: ModelLayout) -> set[str]:
    """Fully-qualified names of the modules that peft wraps for ``structure`` (LoRA, IA3, tuners)."""
    places = set(structure.ia3)
    if structure.lora is not None:
        places |= set(structure.lora.ranks)
    tuner = structure.tuner
    if tuner is not None and tuner.method == "ln_tuning":
        return {name for layer, _ in tuner.places for name in layout.layers[layer].norms}
    if tuner is not None:
        places |= set(tuner.places)
    return {layout.matrix(layer, role).name for layer, role in places}


def validate_on_base_model(
    config: PeftConfig, source: ExportSource, prepare: Callable[[nn.Module, PeftConfig], None] | None = None
) -> PeftModel:
    """Build ``config`` with peft on the real base model; modules and count must be the trial's.
    Returns the built model, whose adapter config names the hub id.

    ``prepare(base_model, config)`` runs first, on the base model and the copy of ``config`` that
    is built: the step a user runs before ``get_peft_model`` (CorDA's preprocessing), or binding a
    mask function to this model's modules, so the check builds what the user will.
    """
    base = load_base_model(source.stored.model, source.stored.head)
    # get_peft_model rewrites base_model_name_or_path to the local folder: build from a copy.
    built = copy.deepcopy(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if prepare is not None:
            prepare(base, built)
        model = get_peft_model(base, built)
    model.peft_config["default"].base_model_name_or_path = config.base_model_name_or_path
    expected = adapted_module_names(source.structure, source.layout)
    adapted = {
        name.removeprefix("base_model.model.")
        for name, module in model.named_modules()
        if isinstance(module, BaseTunerLayer)
    }
    if adapted != expected:
        extra, missing = sorted(adapted - expected), sorted(expected - adapted)
        raise ExportError(
            f"this config adapts {len(adapted)} modules, {source.describe()} trained {len(expected)} "
            f"(extra {extra[:3]}, missing {missing[:3]}); nothing written"
        )
    trainable, _ = model.get_nb_trainable_parameters()
    if trainable != source.trial.trainable_params:
        raise ExportError(
            f"peft builds {trainable:,} trainable parameters from this config, {source.describe()} "
            f"reported {source.trial.trainable_params:,}; nothing written"
        )
    return model
