"""``autopeft export JOB --trial N --compress DENSITY``: ComPEFT on the weights ``autopeft train`` wrote.

Loads the trained adapter of the trial into its base model, scores it on dev, compresses its
module tensors (:mod:`autopeft.export.compeft_format`), loads the compressed folder back through
:func:`autopeft.apply` on a fresh copy of the base model and scores that on dev too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from autopeft.api import WEIGHTS_NAME, AppliedConfig, apply
from autopeft.errors import ExportError
from autopeft.export.autopeft_format import AutopeftConfig
from autopeft.export.compeft import check_density
from autopeft.export.compeft_format import (
    load_compressed,
    named_trainable,
    save_compressed,
    seed_independent,
    stored_bytes,
)
from autopeft.injection.peft_modules import ADAPTER_NAME
from autopeft.models import TaskHead, load_base_model
from autopeft.tasks import Task
from autopeft.training.options import TrainingOptions
from autopeft.training.run import SUMMARY_NAME, score_dev
from autopeft.training.sources import model_of

PEFT_WEIGHTS_NAME = "adapter_model.safetensors"


@dataclass(frozen=True)
class CompressionReport:
    """Sizes (bytes of the adapter as a safetensors file) and dev metrics before and after."""

    density: float
    metric: str
    bytes_before: int
    bytes_after: int
    dev_before: dict[str, float]
    dev_after: dict[str, float]
    path: Path

    def summary_line(self) -> str:
        before, after = self.dev_before[self.metric], self.dev_after[self.metric]
        return (
            f"density {self.density:g}: {self.bytes_before:,} -> {self.bytes_after:,} bytes "
            f"({self.bytes_before / self.bytes_after:.1f}x smaller); dev {self.metric} {before:.4f} -> {after:.4f}; "
            f"wrote {self.path}"
        )


def compress_trial(config: AutopeftConfig, weights: Path, density: float, task: Task, out: Path) -> CompressionReport:
    """Compress the trained adapter of ``config``'s trial found in ``weights`` into ``out``.

    ExportError (one line) for a density outside (0, 1] or a ``weights`` folder that holds no
    trained adapter of that trial.
    """
    check_density(density)
    options = _training_options(config, weights)
    model_ref = model_of(config)
    head = TaskHead(config.head.kind, config.head.num_labels)
    model = load_base_model(model_ref, head)
    initial = seed_independent(model, config)
    trained = apply(model, config)
    _load_trained(trained, weights)
    dev_before = score_dev(model, model_ref, task, options)
    path = save_compressed(trained, Path(out).expanduser(), density, initial)
    bytes_before = stored_bytes(named_trainable(trained))
    trained.remove()
    reloaded = load_compressed(load_base_model(model_ref, head), path.parent)
    dev_after = score_dev(reloaded.model, model_ref, task, options)
    return CompressionReport(density, task.metric, bytes_before, path.stat().st_size, dev_before, dev_after, path)


def _training_options(config: AutopeftConfig, weights: Path) -> TrainingOptions:
    """The options the trial's weights were trained with; ExportError when ``weights`` holds none of it."""
    origin = config.origin or {}
    trial = f"trial {origin.get('trial')} of job {origin.get('job')}"
    hint = f"train them with `autopeft train {origin.get('job')} --trial {origin.get('trial')} --out DIR`, then pass --weights DIR"
    summary_path = Path(weights).expanduser() / SUMMARY_NAME
    if not summary_path.is_file():
        raise ExportError(f"{trial} has no trained weights in {weights} (no {SUMMARY_NAME}); {hint}")
    summary = json.loads(summary_path.read_text())
    trained_on = summary.get("origin") or {}
    if (trained_on.get("job"), trained_on.get("trial")) != (origin.get("job"), origin.get("trial")):
        raise ExportError(
            f"{weights} holds weights of trial {trained_on.get('trial')} of job {trained_on.get('job')}, not {trial}; {hint}"
        )
    return TrainingOptions(**summary["options"])


def _load_trained(applied: AppliedConfig, weights: Path) -> None:
    """Copy the tensors ``autopeft train`` saved (a peft or an autopeft adapter) into ``applied``."""
    named = named_trainable(applied)
    autopeft_file, peft_file = Path(weights) / WEIGHTS_NAME, Path(weights) / PEFT_WEIGHTS_NAME
    if autopeft_file.is_file():
        saved = load_file(str(autopeft_file))
    elif peft_file.is_file():
        saved_peft = load_file(str(peft_file))
        saved = {name: saved_peft[_peft_key(name)] for name in named if _peft_key(name) in saved_peft}
    else:
        raise ExportError(f"no {WEIGHTS_NAME} or {PEFT_WEIGHTS_NAME} in {weights}")
    if set(saved) != set(named) or any(saved[n].shape != p.shape for n, p in named.items()):
        raise ExportError(f"the adapter in {weights} does not hold the tensors of the trial's structure")
    with torch.no_grad():
        for name, parameter in named.items():
            parameter.copy_(saved[name])


def _peft_key(name: str) -> str:
    """Where ``PeftModel.save_pretrained`` puts the tensor autopeft names ``name``: behind the
    ``base_model.model.`` prefix, without the adapter's name (the head under its own name)."""
    return "base_model.model." + name.replace(f".{ADAPTER_NAME}.", ".")
