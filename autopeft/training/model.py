"""The base model with an exported structure in it, ready for the Trainer and for saving.

A structure that one peft config holds trains as a real ``PeftModel`` (``get_peft_model``) and is
saved as a peft adapter folder that ``PeftModel.from_pretrained(base, folder)`` loads. Any other
structure is applied with :func:`autopeft.apply` and saved in autopeft's format
(:func:`autopeft.load_adapter` loads it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from peft import get_peft_model
from transformers import PreTrainedModel

from autopeft.api import apply, save_adapter
from autopeft.errors import ExportError
from autopeft.export.autopeft_format import AutopeftConfig, layout_on
from autopeft.export.peft_format import fits_one_peft_adapter, peft_config_for
from autopeft.injection.apply import rate_groups
from autopeft.space.tuners import adapter_rate_factor

# Registered under the model so that the Trainer's optimizer and device moves see the hand-written
# modules, which otherwise sit outside the module tree (attached through hooks).
NATIVE_MODULE_NAME = "autopeft_native"


@dataclass
class TrainableModel:
    """A model to train, how many parameters train, and how to save its adapter.

    Attributes:
        model: what the Trainer trains (a PeftModel, or the base model with native modules).
        adapter_format: ``peft`` or ``autopeft``: what :attr:`save` writes.
        save: writes the adapter (trained tensors and config) into a folder.
        after_optimizer_step: what must run after every optimizer step, before gradients are
            cleared (AdaLoRA's rank allocation), or None.
        rate_factors: trainable parameter -> the factor on the run's learning rate its module
            kind trains at (:func:`autopeft.space.tuners.rate_factor`); a parameter not listed trains at 1.
    """

    model: PreTrainedModel
    adapter_format: str
    save: Callable[[Path], object]
    after_optimizer_step: Callable[[int], None] | None = None
    rate_factors: dict[int, float] = field(default_factory=dict)

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def optimizer_groups(self, learning_rate: float) -> list[dict]:
        """AdamW parameter groups of the trainable parameters, each at ``learning_rate`` times its factor."""
        trainable = (p for p in self.model.parameters() if p.requires_grad)
        return [{"params": group["params"], "lr": learning_rate * group["rate_factor"]}
                for group in rate_groups(trainable, self.rate_factors)]


def prepare_model(base: PreTrainedModel, config: AutopeftConfig, total_steps: int | None = None) -> TrainableModel:
    """Put ``config``'s structure into ``base``; ExportError when its trainable count differs.

    ``total_steps`` is the run's length, which AdaLoRA's rank schedule needs.
    """
    if fits_one_peft_adapter(config.structure):
        trainable = _peft_model(base, config, total_steps)
    else:
        applied = apply(base, config, total_steps=total_steps)
        base.add_module(NATIVE_MODULE_NAME, applied.native)
        trainable = TrainableModel(base, "autopeft", lambda folder: save_adapter(applied, folder),
                                   applied.after_optimizer_step, applied.rate_factors)
    if trainable.trainable_params != config.trainable_params:
        raise ExportError(
            f"the structure trains {trainable.trainable_params:,} parameters on this model, the config "
            f"says {config.trainable_params:,}"
        )
    return trainable


def _peft_model(base: PreTrainedModel, config: AutopeftConfig, total_steps: int | None) -> TrainableModel:
    layout = layout_on(base, config.layout)
    peft_config = peft_config_for(config.structure, layout, config.head.kind, config.base_model, total_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(base, peft_config)
    # get_peft_model records the local folder the weights came from; saved adapters name the hub id.
    model.peft_config["default"].base_model_name_or_path = config.base_model
    # No embedding layer ever trains; "auto" would look the base model up on the hub to decide.
    allocate = getattr(model.base_model, "update_and_allocate", None)  # AdaLoRA's
    factor = adapter_rate_factor(config.structure)  # the head (modules_to_save) trains at the run's rate
    factors = {id(p): factor for name, p in model.named_parameters() if p.requires_grad and "modules_to_save" not in name}
    return TrainableModel(model, "peft", lambda folder: model.save_pretrained(str(folder), save_embedding_layers=False),
                          allocate, factors)
