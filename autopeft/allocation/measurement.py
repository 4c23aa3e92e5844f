"""What measurements on task data share: seeded batches, handing the model back as it came, and
the peak memory of a block (a proxy trial's cost, or a lottery warm-up charged to its trials).

A measurement must be reproducible from its settings (the store caches it under them), so the
task head it sees is re-initialised from the measurement's seed, and it must not disturb the
worker's model: the head's tensors, every ``requires_grad`` flag and the train/eval mode are put
back afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import torch
from torch import nn

from autopeft.injection import head_parameters, reset_head
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import place_key
from autopeft.tasks import TokenizedSplit


def batch_indices(size: int, batches: int, batch_size: int, seed: int) -> list[list[int]]:
    """``batches`` lists of ``batch_size`` example indices out of ``size`` examples.

    Examples come from one seeded permutation, in order, starting a fresh permutation when the
    data runs out; small data therefore repeats examples only after using all of them.
    """
    if size < 1 or batches < 1 or batch_size < 1:
        raise ValueError(f"need data, batches and a batch size (got {size} examples, {batches} x {batch_size})")
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < batches * batch_size:
        order += torch.randperm(size, generator=generator).tolist()
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(batches)]


def model_batch(data: TokenizedSplit, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
    """Model inputs and ``labels`` for ``indices`` on ``device`` (see :meth:`TokenizedSplit.batch`)."""
    return {name: tensor.to(device) for name, tensor in data.batch(indices).items()}


def unlabelled(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` without its ``labels``: a forward pass that sees no targets (and returns no loss)."""
    return {name: tensor for name, tensor in batch.items() if name != "labels"}


def role_weights(model: nn.Module, layout: ModelLayout) -> dict[str, nn.Parameter]:
    """Place key (``"3.q"``) -> the weight of every role matrix of ``layout``."""
    return {place_key((layer.index, role)): model.get_submodule(shape.name).weight
            for layer in layout.layers for role, shape in layer.matrices.items()}


@contextmanager
def measuring(model: nn.Module, layout: ModelLayout, seed: int) -> Iterator[None]:
    """Eval mode and a task head drawn from ``seed`` while the block runs; the model as before after."""
    head = head_parameters(model, layout)
    saved_head = [p.detach().clone() for p in head]
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    reset_head(model, layout, seed)
    model.eval()
    try:
        yield
    finally:
        with torch.no_grad():
            for parameter, saved in zip(head, saved_head, strict=True):
                parameter.copy_(saved)
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)
        model.train(was_training)


class Peak:
    """The largest memory use seen (bytes), filled in by :func:`peak_memory`."""

    bytes: int | None = None


@contextmanager
def peak_memory(device: torch.device, interval_s: float = 0.02) -> Iterator[Peak]:
    """Peak memory while the block runs: allocated accelerator memory, or the process's RSS
    (bytes, sampled every ``interval_s`` seconds)."""
    peak = Peak()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        try:
            yield peak
        finally:
            peak.bytes = torch.cuda.max_memory_allocated(device)
        return
    process, done = psutil.Process(), threading.Event()
    peak.bytes = process.memory_info().rss

    def sample() -> None:
        while not done.wait(interval_s):
            peak.bytes = max(peak.bytes, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak.bytes = max(peak.bytes, process.memory_info().rss)
