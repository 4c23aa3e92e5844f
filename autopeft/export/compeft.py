"""ComPEFT compression of trained update tensors: top-k sparsification, then ternary values.

ComPEFT (Yadav et al., 2023) keeps the ``k = ceil(density * n)`` entries of largest magnitude of
each update tensor (n entries) and replaces each kept entry by its sign times one scale per
tensor. The paper sets that scale to ``alpha * std(update)`` with alpha tuned on validation data;
here it is the mean |value| of the kept entries, the scale that minimises the squared error of the
kept entries for their signs, so nothing is tuned on dev.

A compressed tensor is stored as two bit fields and one float: which entries are kept (n bits),
the signs of the kept ones (k bits), and the scale (float32). At density d that is about
``(1 + d) / 8`` bytes per entry instead of 4 (float32). Bits are packed by hand because torch has
no ``packbits``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

import torch

from autopeft.errors import ExportError

SUFFIXES = (".compeft_kept", ".compeft_signs", ".compeft_scale")
"""Keys of one compressed tensor ``name``: ``name`` + each suffix (packed kept bits, packed signs, scale)."""

_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def check_density(density: float) -> float:
    """``density`` if it is in (0, 1]; ExportError naming it otherwise."""
    if not 0 < density <= 1:
        raise ExportError(f"--compress density must be in (0, 1], got {density:g}")
    return density


def fingerprint(tensors: Iterable[torch.Tensor]) -> str:
    """SHA-256 hex digest of the values of ``tensors``, whatever their order or names: two
    collections match exactly when they hold the same bit-identical tensors (dtype and shape too)."""
    return hashlib.sha256("".join(sorted(map(_digest, tensors))).encode()).hexdigest()


def _digest(tensor: torch.Tensor) -> str:
    flat = tensor.detach().cpu().contiguous().view(-1)
    header = f"{flat.dtype}{tuple(tensor.shape)}".encode()
    return hashlib.sha256(header + flat.view(torch.uint8).numpy().tobytes()).hexdigest()


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Bool tensor of n entries -> uint8 tensor of ceil(n / 8) bytes, first entry in the high bit."""
    flat = bits.flatten().to(torch.uint8)
    padded = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)])
    return (padded.view(-1, 8) * _BIT_WEIGHTS).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` bits of a :func:`pack_bits` result, as a bool tensor of shape (count,)."""
    return (packed.unsqueeze(1) & _BIT_WEIGHTS).ne(0).flatten()[:count]


def ternarize(update: torch.Tensor, density: float) -> dict[str, torch.Tensor]:
    """The ComPEFT form of ``update`` (any shape, n entries) at ``density``.

    Returns ``kept`` (uint8, ceil(n / 8) bytes: packed flags of the ceil(density * n) entries of
    largest |value|), ``signs`` (uint8, packed: 1 where a kept entry is positive, in entry order)
    and ``scale`` (float32, shape (1,): mean |value| of the kept entries).
    """
    flat = update.detach().flatten().float()
    count = math.ceil(check_density(density) * flat.numel())
    chosen = torch.topk(flat.abs(), count).indices.sort().values
    kept = torch.zeros(flat.numel(), dtype=torch.bool)
    kept[chosen] = True
    return {
        "kept": pack_bits(kept),
        "signs": pack_bits(flat[chosen] > 0),
        "scale": flat[chosen].abs().mean().reshape(1),
    }


def expand(kept: torch.Tensor, signs: torch.Tensor, scale: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The dense float32 tensor of ``shape`` that a :func:`ternarize` result stands for."""
    numel = math.prod(shape)
    flags = unpack_bits(kept, numel)
    count = int(flags.sum())
    values = torch.where(unpack_bits(signs, count), scale, -scale)
    dense = torch.zeros(numel, dtype=torch.float32)
    dense[flags] = values
    return dense.view(shape)


def compress_tensors(
    updates: Mapping[str, torch.Tensor], density: float, dense: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A safetensors-ready dict: every tensor of ``updates`` ternarized under its name and
    :data:`SUFFIXES`, every tensor of ``dense`` kept as it is under its name."""
    stored = {name: tensor.detach().contiguous().cpu() for name, tensor in dense.items()}
    for name, update in updates.items():
        parts = ternarize(update.cpu(), density)
        stored.update({name + suffix: parts[part] for suffix, part in zip(SUFFIXES, ("kept", "signs", "scale"))})
    return stored


def decompress_tensors(stored: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Name -> dense tensor for every name in ``shapes``: expanded when ``stored`` holds it
    compressed, as stored otherwise; KeyError naming a tensor that ``stored`` lacks."""
    dense = {}
    for name, shape in shapes.items():
        if name + SUFFIXES[0] in stored:
            dense[name] = expand(*(stored[name + suffix] for suffix in SUFFIXES), shape)
        else:
            dense[name] = stored[name]
    return dense
