"""A ComPEFT-compressed adapter: an autopeft config and its trained tensors, compressed.

The folder holds ``autopeft_config.json`` and :data:`COMPRESSED_NAME`. Module tensors are stored
ternary (:mod:`autopeft.export.compeft`), the task head dense. A tensor whose initial value does
not depend on the seed (LoRA's B = 0, IA3's scales = 1, DoRA's magnitudes) is stored as its change
from that value, which :func:`autopeft.apply` rebuilds on any copy of the base model; a randomly
initialised one (LoRA's A) is stored as its trained value, since its draw cannot be rebuilt.
:func:`load_compressed` applies the config and adds or writes the expanded tensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save, save_file
from torch import nn

from autopeft.api import AppliedConfig, _named_trainable, apply
from autopeft.errors import ExportError
from autopeft.export.compeft import compress_tensors, decompress_tensors

COMPRESSED_NAME = "autopeft_adapter.compeft.safetensors"
RELATIVE_KEY = "relative"
"""Metadata key: JSON list of the tensors stored as their change from the initial value."""


def named_trainable(applied: AppliedConfig) -> dict[str, nn.Parameter]:
    """The trainable tensors by the names :func:`autopeft.save_adapter` writes."""
    return _named_trainable(applied)


def head_names(applied: AppliedConfig) -> set[str]:
    """Names of the task head's tensors (stored dense)."""
    prefixes = tuple(module + "." for module in applied.config.layout["head_modules"])
    return {name for name in named_trainable(applied) if name.startswith(prefixes)}


def seed_independent(model: nn.Module, config) -> dict[str, torch.Tensor]:
    """Name -> initial value of every trainable tensor that :func:`apply` builds the same under two
    seeds (constant or weight-derived initialisations); the model comes back without the modules."""
    drawn = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        applied = apply(model, config)
        drawn.append({name: p.detach().clone() for name, p in named_trainable(applied).items()})
        applied.remove()
    return {name: value for name, value in drawn[0].items() if torch.equal(value, drawn[1][name])}


def save_compressed(
    applied: AppliedConfig, directory: Path, density: float, initial: Mapping[str, torch.Tensor]
) -> Path:
    """Write the config and ``applied``'s trained tensors, module tensors compressed at ``density``
    (as changes from ``initial`` where it holds them), into ``directory``; returns the weights file."""
    trained = {name: p.detach().cpu() for name, p in named_trainable(applied).items()}
    head = head_names(applied)
    updates = {
        name: tensor - initial[name].cpu() if name in initial else tensor
        for name, tensor in trained.items()
        if name not in head
    }
    relative = sorted(name for name in updates if name in initial)
    directory.mkdir(parents=True, exist_ok=True)
    applied.config.save(directory)
    path = directory / COMPRESSED_NAME
    stored = compress_tensors(updates, density, {name: trained[name] for name in head})
    save_file(stored, str(path), metadata={RELATIVE_KEY: json.dumps(relative), "density": repr(density)})
    return path


def load_compressed(model: nn.Module, directory: str | Path) -> AppliedConfig:
    """Apply the config in ``directory`` to ``model`` and load its compressed tensors into it."""
    directory = Path(directory).expanduser()
    applied = apply(model, directory)
    path = directory / COMPRESSED_NAME
    if not path.is_file():
        applied.remove()
        raise ExportError(f"no {COMPRESSED_NAME} in {directory}")
    with safe_open(str(path), "pt") as handle:
        relative = set(json.loads(handle.metadata()[RELATIVE_KEY]))
        stored = {key: handle.get_tensor(key) for key in handle.keys()}
    named = named_trainable(applied)
    try:
        dense = decompress_tensors(stored, {name: p.shape for name, p in named.items()})
    except KeyError as missing:
        applied.remove()
        raise ExportError(f"{path} lacks tensor {missing} of its config's structure") from None
    with torch.no_grad():
        for name, parameter in named.items():
            value = dense[name].to(parameter.device, parameter.dtype)
            parameter.add_(value) if name in relative else parameter.copy_(value)
    return applied


def stored_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Bytes of ``tensors`` written as one safetensors file (header included)."""
    return len(save({name: t.detach().contiguous().cpu() for name, t in tensors.items()}))
