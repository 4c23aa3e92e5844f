"""IST layer importance, a documented simplification of Importance-aware Sparse Tuning.

IST (Yao et al., "Layer-wise Importance Matters: Less Memory for Better Performance in
Parameter-efficient Fine-tuning of Large Language Models", EMNLP Findings 2024) keeps one score
per layer while PEFT modules train. Every few steps it samples a few random sets of half the
layers (currently less important layers more likely), scales the PEFT modules of a set down to a
quarter of their output ("response suppression"), measures the loss on one batch, and moves the
scores of the set's layers by a REINFORCE update with reward exp(-loss) minus the mean over the
sets: layers whose suppression hurts least become less important. Training then updates only a
sampled quarter of the layers, preferring important ones.

The allocator needs one static importance per layer, measured once per (model, task), so here:

1. LoRA of rank ``rank`` goes on every role matrix of every layer and trains for ``steps`` steps,
   all layers at once, so that every layer's modules have learned something before the probe;
2. on ``probe_batches`` fixed batches the mean loss is measured with all modules active, then for
   each layer alone with that layer's LoRA scaled by ``suppression`` (0 switches it off; IST
   uses 0.25);
3. importance = max(loss increase, 0) + a floor of :data:`IMPORTANCE_FLOOR` times the largest
   increase, so that no layer's importance is zero and ``importance ** sharpness`` stays finite.

Suppressing one layer at a time on shared batches measures directly, and deterministically, what
IST estimates stochastically from random half-sets — how much the loss depends on a layer's
modules — in L + 1 forward passes per probe batch: affordable once per job, whereas IST's online
estimate is designed to cost little per training step. The modules are removed afterwards and
the model comes back bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from peft.tuners.lora import LoraLayer
from torch import nn

from autopeft.allocation.measurement import batch_indices, measuring, model_batch
from autopeft.space.sensitivity import Sensitivity
from autopeft.injection import apply_structure
from autopeft.injection.peft_modules import ADAPTER_NAME
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import LoraModules, Structure
from autopeft.tasks import TokenizedSplit

IMPORTANCE_FLOOR = 1e-3
"""Importance every layer gets on top of its loss increase, relative to the largest increase."""


def measure_ist(
    model: nn.Module,
    layout: ModelLayout,
    data: TokenizedSplit,
    *,
    steps: int = 50,
    probe_batches: int = 4,
    batch_size: int = 16,
    rank: int = 4,
    learning_rate: float = 1e-3,
    suppression: float = 0.0,
    seed: int = 0,
) -> Sensitivity:
    """Per-layer importance of ``layout``'s layers from loss probes with one layer suppressed.

    Training batches and probe batches are drawn from ``data`` by :func:`batch_indices` with
    seeds ``seed`` and ``seed + 1``. The model runs in eval mode (no dropout) with its task head
    drawn from ``seed``; LoRA initialisation is seeded too, without touching the caller's RNG.
    """
    started = time.perf_counter()
    structure = Structure(
        lora=LoraModules(ranks={(layer.index, role): rank for layer in layout.layers for role in layer.matrices})
    )
    training = batch_indices(len(data), steps, batch_size, seed)
    probes = batch_indices(len(data), probe_batches, batch_size, seed + 1)
    with measuring(model, layout, seed), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        applied = apply_structure(model, structure, layout)
        try:
            _train(model, applied.parameters, data, training, learning_rate)
            increases = _loss_increases(model, layout, data, probes, suppression)
        finally:
            applied.remove()
    return Sensitivity(
        method="ist",
        layer_importance=_importance(increases),
        seconds=time.perf_counter() - started,
    )


def _train(
    model: nn.Module, parameters: list[nn.Parameter], data: TokenizedSplit,
    batches: Sequence[list[int]], learning_rate: float,
) -> None:
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    with torch.enable_grad():
        for indices in batches:
            model(**model_batch(data, indices, device)).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def _loss_increases(
    model: nn.Module, layout: ModelLayout, data: TokenizedSplit, probes: Sequence[list[int]], suppression: float
) -> list[float]:
    """Per layer: mean probe loss (nats) with the layer's LoRA scaled by ``suppression``, minus with all active."""
    device = next(model.parameters()).device
    batches = [model_batch(data, indices, device) for indices in probes]

    def probe_loss() -> float:
        return sum(model(**batch).loss.item() for batch in batches) / len(batches)

    active = probe_loss()
    increases = []
    for layer in layout.layers:
        with _scaled(_lora_layers(model, layer.path), suppression):
            increases.append(probe_loss() - active)
    return increases


def _lora_layers(model: nn.Module, path: str) -> list[LoraLayer]:
    return [module for module in model.get_submodule(path).modules() if isinstance(module, LoraLayer)]


@contextmanager
def _scaled(lora_layers: Sequence[LoraLayer], factor: float) -> Iterator[None]:
    """Multiply the LoRA output of ``lora_layers`` by ``factor`` while the block runs."""
    for lora in lora_layers:
        lora.set_scale(ADAPTER_NAME, factor)
    try:
        yield
    finally:
        for lora in lora_layers:
            lora.set_scale(ADAPTER_NAME, 1.0)


def _importance(increases: Sequence[float]) -> tuple[float, ...]:
    clipped = [max(increase, 0.0) for increase in increases]
    largest = max(clipped)
    floor = IMPORTANCE_FLOOR * largest if largest > 0 else 1.0
    return tuple(value + floor for value in clipped)
