"""A ComPEFT-compressed adapter: an autopeft config and its trained tensors, compressed.

The folder holds ``autopeft_config.json`` and :data:`COMPRESSED_NAME`. Module tensors are stored
ternary (:mod:`autopeft.export.compeft`), the task head dense. A tensor whose initial value does
not depend on the seed (LoRA's B = 0, IA3's scales = 1, DoRA's magnitudes) is stored as its change
from that value, which :func:`autopeft.apply` rebuilds on any copy of the base model. A randomly
initialised one (LoRA's A) is stored as :data:`SEEDED_SCHEMES` says; under ``delta`` the file
also holds torch's CPU random state from just before training drew it, and :func:`load_compressed`
draws it again from that state, refusing when the draw does not match its recorded fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save, save_file
from torch import nn

from autopeft.api import AppliedConfig, _named_trainable, apply
from autopeft.errors import ExportError
from autopeft.export.compeft import compress_tensors, decompress_tensors, fingerprint

COMPRESSED_NAME = "autopeft_adapter.compeft.safetensors"
RELATIVE_KEY = "relative"
"""Metadata key: JSON list of the tensors stored as their change from the initial value."""
REBUILT_KEY = "rebuilt"
"""Metadata key: JSON ``{"names": [...], "fingerprint": ...}`` of the seeded tensors stored as
changes, whose initial draw :func:`load_compressed` rebuilds from :data:`RNG_STATE_KEY`."""
RNG_STATE_KEY = "compeft_rng_state"
"""Tensor key: torch's CPU generator state (uint8, 5,056 bytes) from which apply drew the seeded tensors."""
SEEDED_SCHEMES = ("delta", "dense")
"""How a seeded tensor (LoRA's A) is stored: ``delta``, ternary as its change from the initial draw
(rebuilt at load time); ``dense``, as trained, uncompressed. Ternary as trained is no option: A is
then mostly its random draw, whose top-k loses the subspace B maps from (dev accuracy fell to the
majority level, docs/compeft.md before this change)."""
DEFAULT_SEEDED = "dense"
"""Chosen by ``bench/compeft.py`` on the search split (docs/compeft.md): neither way kept the score
(B's ternary change alone costs it), ``dense`` lost least."""


@dataclass(frozen=True)
class Initialisation:
    """What :func:`autopeft.apply` draws for a config from one random state.

    Attributes:
        values: name -> initial value of every trainable tensor (modules and head).
        seeded: names of the module tensors whose initial value depends on the random state.
        rng_state: torch's CPU generator state (uint8, 5,056 bytes) the values were drawn from.
    """

    values: dict[str, torch.Tensor]
    seeded: frozenset[str]
    rng_state: torch.Tensor


def named_trainable(applied: AppliedConfig) -> dict[str, nn.Parameter]:
    """The trainable tensors by the names :func:`autopeft.save_adapter` writes."""
    return _named_trainable(applied)


def head_names(applied: AppliedConfig) -> set[str]:
    """Names of the task head's tensors (stored dense)."""
    prefixes = tuple(module + "." for module in applied.config.layout["head_modules"])
    return {name for name in named_trainable(applied) if name.startswith(prefixes)}


def initialisation(model: nn.Module, config, rng_state: torch.Tensor) -> Initialisation:
    """The tensors :func:`apply` draws for ``config`` on ``model`` from ``rng_state``, and which of
    them depend on it (they differ under two other seeds); the model comes back without the modules
    and the caller's random state is left as it was."""
    drawn = [_drawn(model, config, torch.manual_seed, seed) for seed in (0, 1)]
    values = _drawn(model, config, torch.set_rng_state, rng_state)
    seeded = frozenset(name for name, value in drawn[0].items() if not torch.equal(value, drawn[1][name]))
    return Initialisation(values, seeded, rng_state)


def _drawn(model: nn.Module, config, set_state, state) -> dict[str, torch.Tensor]:
    """Name -> value of every trainable tensor of ``config`` applied to ``model`` right after
    ``set_state(state)``; the modules are removed again."""
    with torch.random.fork_rng(devices=[]):
        set_state(state)
        applied = apply(model, config)
    values = {name: p.detach().clone() for name, p in named_trainable(applied).items()}
    applied.remove()
    return values


def save_compressed(
    applied: AppliedConfig, directory: Path, density: float, initial: Initialisation, seeded: str = DEFAULT_SEEDED
) -> Path:
    """Write the config and ``applied``'s trained tensors into ``directory``: module tensors ternary
    at ``density`` as changes from ``initial`` (seeded ones as ``seeded`` says, one of
    :data:`SEEDED_SCHEMES`), the head dense; returns the weights file."""
    if seeded not in SEEDED_SCHEMES:
        raise ExportError(f"seeded tensors are stored as one of {', '.join(SEEDED_SCHEMES)}, not {seeded!r}")
    trained = {name: p.detach().cpu() for name, p in named_trainable(applied).items()}
    dense = {name: trained[name] for name in head_names(applied)}
    if seeded == "dense":
        dense.update({name: trained[name] for name in initial.seeded})
    relative = sorted(set(trained) - set(dense))
    updates = {name: trained[name] - initial.values[name].cpu() for name in relative}
    rebuilt = sorted(initial.seeded & set(relative))
    stored = compress_tensors(updates, density, dense)
    metadata = {RELATIVE_KEY: json.dumps(relative), "density": repr(density)}
    if rebuilt:
        stored[RNG_STATE_KEY] = initial.rng_state
        metadata[REBUILT_KEY] = json.dumps(
            {"names": rebuilt, "fingerprint": fingerprint(initial.values[name] for name in rebuilt)}
        )
    directory.mkdir(parents=True, exist_ok=True)
    applied.config.save(directory)
    path = directory / COMPRESSED_NAME
    save_file(stored, str(path), metadata=metadata)
    return path


def load_compressed(model: nn.Module, directory: str | Path) -> AppliedConfig:
    """Apply the config in ``directory`` to ``model`` and load its compressed tensors into it.

    ExportError when the folder lacks the weights file or a tensor of the structure, or when the
    initial draw of the seeded tensors stored as changes cannot be rebuilt exactly here.
    """
    directory = Path(directory).expanduser()
    path = directory / COMPRESSED_NAME
    if not path.is_file():
        raise ExportError(f"no {COMPRESSED_NAME} in {directory}")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        stored = {key: handle.get_tensor(key) for key in handle.keys()}
    rebuilt = json.loads(metadata.get(REBUILT_KEY, "null"))
    rng_state = stored.pop(RNG_STATE_KEY, None)
    if rebuilt and rng_state is None:
        raise ExportError(f"{path} stores changes from a random draw but lacks tensor '{RNG_STATE_KEY}' to redraw it")
    applied = _apply_rebuilding(model, directory, rng_state)
    named = named_trainable(applied)
    try:
        if rebuilt and fingerprint(named[name] for name in rebuilt["names"]) != rebuilt["fingerprint"]:
            raise ExportError(
                f"cannot rebuild the initial LoRA A draw that {path} stores changes from: this torch/peft "
                "draws other values from its recorded random state; export it again here"
            )
        dense = decompress_tensors(stored, {name: p.shape for name, p in named.items()})
    except KeyError as missing:
        applied.remove()
        raise ExportError(f"{path} lacks tensor {missing} of its config's structure") from None
    except ExportError:
        applied.remove()
        raise
    relative = set(json.loads(metadata[RELATIVE_KEY]))
    with torch.no_grad():
        for name, parameter in named.items():
            value = dense[name].to(parameter.device, parameter.dtype)
            parameter.add_(value) if name in relative else parameter.copy_(value)
    return applied


def _apply_rebuilding(model: nn.Module, directory: Path, rng_state: torch.Tensor | None) -> AppliedConfig:
    """:func:`apply` of the config in ``directory``, drawing from ``rng_state`` when one is given
    (the caller's random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        if rng_state is not None:
            torch.set_rng_state(rng_state)
        return apply(model, directory)


def stored_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Bytes of ``tensors`` written as one safetensors file (header included)."""
    return len(save({name: t.detach().contiguous().cpu() for name, t in tensors.items()}))
