"""``autopeft export JOB --trial N --compress DENSITY``: ComPEFT on the weights ``autopeft train`` wrote.

Rebuilds the initialisation the trial was trained from (the seed in the training summary, checked
against the fingerprint training recorded), loads the trained adapter into the base model, scores it
on dev, compresses its module tensors (:mod:`autopeft.export.compeft_format`), loads the compressed
folder back through :func:`autopeft.apply` on a fresh copy of the base model and scores that on dev too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import set_seed

from autopeft.api import WEIGHTS_NAME, AppliedConfig, apply
from autopeft.errors import ExportError
from autopeft.export.autopeft_format import AutopeftConfig
from autopeft.export.compeft import check_density, fingerprint
from autopeft.export.compeft_format import (
    DEFAULT_SEEDED,
    Initialisation,
    initialisation,
    load_compressed,
    named_trainable,
    save_compressed,
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
    seeded: str
    metric: str
    bytes_before: int
    bytes_after: int
    dev_before: dict[str, float]
    dev_after: dict[str, float]
    path: Path

    def summary_line(self) -> str:
        before, after = self.dev_before[self.metric], self.dev_after[self.metric]
        return (
            f"density {self.density:g} (LoRA A: {self.seeded}): {self.bytes_before:,} -> {self.bytes_after:,} bytes "
            f"({self.bytes_before / self.bytes_after:.1f}x smaller); dev {self.metric} {before:.4f} -> {after:.4f}; "
            f"wrote {self.path}"
        )


def compress_trial(
    config: AutopeftConfig, weights: Path, density: float, task: Task, out: Path, seeded: str = DEFAULT_SEEDED
) -> CompressionReport:
    """Compress the trained adapter of ``config``'s trial found in ``weights`` into ``out``, seeded
    tensors (LoRA's A) as ``seeded`` says (:data:`~autopeft.export.compeft_format.SEEDED_SCHEMES`).

    ExportError (one line) for a density outside (0, 1], a ``weights`` folder that holds no trained
    adapter of that trial, or (``delta``) an initialisation that cannot be rebuilt exactly.
    """
    check_density(density)
    summary = _training_summary(config, weights)
    options = TrainingOptions(**summary["options"])
    model_ref = model_of(config)
    head = TaskHead(config.head.kind, config.head.num_labels)
    set_seed(options.seed)  # what train_config does before loading the model and drawing the modules
    model = load_base_model(model_ref, head)
    initial = initialisation(model, config, torch.get_rng_state())
    if seeded == "delta" and initial.seeded:
        _check_rebuilt(initial, summary, weights)
    trained = apply(model, config)
    _load_trained(trained, weights)
    dev_before = score_dev(model, model_ref, task, options)
    path = save_compressed(trained, Path(out).expanduser(), density, initial, seeded)
    bytes_before = stored_bytes(named_trainable(trained))
    trained.remove()
    reloaded = load_compressed(load_base_model(model_ref, head), path.parent)
    dev_after = score_dev(reloaded.model, model_ref, task, options)
    return CompressionReport(
        density, seeded, task.metric, bytes_before, path.stat().st_size, dev_before, dev_after, path
    )


def _training_summary(config: AutopeftConfig, weights: Path) -> dict:
    """The summary ``autopeft train`` wrote next to the trial's weights; ExportError when ``weights``
    holds none, or one of another trial."""
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
    return summary


def _check_rebuilt(initial: Initialisation, summary: dict, weights: Path) -> None:
    """ExportError unless ``initial`` is bit for bit the initialisation the summary's run trained from."""
    recorded = summary.get("initial_fingerprint")
    if recorded is None:
        raise ExportError(
            f"{weights / SUMMARY_NAME} records no fingerprint of the initial LoRA A draw (trained by an older "
            "autopeft), so its changes cannot be verified; train it again"
        )
    if fingerprint(initial.values.values()) != recorded:
        raise ExportError(
            f"the initialisation rebuilt from seed {summary['options']['seed']} differs from the one {weights} was "
            "trained from (another torch, peft or transformers version?); compress it where it was trained"
        )


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
