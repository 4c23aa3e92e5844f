"""SPT sensitivities (He et al., "Sensitivity-aware visual parameter-efficient fine-tuning", 2023).

The sensitivity of one weight is Σ over k batches of (∂L/∂w)², the squared gradient of the task
loss with respect to the frozen base weight (first-order Taylor estimate of the loss drop one
step of tuning that weight alone would bring). Per role matrix we keep the sum of its weights'
sensitivities and, for every τ of :data:`~autopeft.space.sensitivity.TAU_GRID`, how many of
its weights are among the top ``τ * N`` of all N role-matrix weights: the quantity SPT's switch
between unstructured and structured tuning looks at.

Memory: one float32 accumulator per role matrix (the size of those weights; ~42 MB for MiniLM,
~425 MB for SmolLM2-135M) filled in place by post-accumulate-grad hooks that free each gradient
as soon as it is added, so at most one matrix's gradient lives beside them. Global thresholds are
found without concatenating anything: each accumulator is sorted in place, and a binary search
over float32 bit patterns (monotone for non-negative floats) counts weights above a candidate
threshold with one ``searchsorted`` per matrix, for all τ at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial

import torch
from torch import nn

from autopeft.allocation.measurement import batch_indices, measuring, model_batch, role_weights
from autopeft.space.sensitivity import TAU_GRID, Sensitivity
from autopeft.space.layout import ModelLayout
from autopeft.tasks import TokenizedSplit


def measure_spt(
    model: nn.Module,
    layout: ModelLayout,
    data: TokenizedSplit,
    *,
    batches: int = 16,
    batch_size: int = 32,
    seed: int = 0,
) -> Sensitivity:
    """SPT sensitivities of every role matrix of ``layout`` on ``batches`` batches of ``data``.

    The model runs in eval mode (no dropout) without PEFT modules, with its task head drawn from
    ``seed``; it comes back unchanged. Batches are drawn by :func:`batch_indices` with ``seed``.
    """
    started = time.perf_counter()
    return spt_scores(spt_squared_gradients(model, layout, data, batches=batches, batch_size=batch_size, seed=seed),
                      started)


def spt_squared_gradients(
    model: nn.Module, layout: ModelLayout, data: TokenizedSplit, *, batches: int, batch_size: int, seed: int
) -> dict[str, torch.Tensor]:
    """Place key -> Σ (∂L/∂w)² of every role matrix, measured as :func:`measure_spt` describes."""
    with measuring(model, layout, seed):
        return squared_gradients(model, role_weights(model, layout), data,
                                 batch_indices(len(data), batches, batch_size, seed))


def spt_scores(squared: dict[str, torch.Tensor], started: float) -> Sensitivity:
    """SPT's per-matrix scores and top-τ counts from :func:`spt_squared_gradients`, which it
    consumes (see :func:`top_fraction_counts`); ``started`` is the measurement's perf_counter start."""
    scores = {key: float(values.sum(dtype=torch.float64)) for key, values in squared.items()}
    total = sum(values.numel() for values in squared.values())
    counts = top_fraction_counts(squared, TAU_GRID)
    return Sensitivity(
        method="spt",
        matrix_scores=scores,
        tau_grid=TAU_GRID,
        sensitive_counts=counts,
        total_weights=total,
        seconds=time.perf_counter() - started,
    )


def squared_gradients(
    model: nn.Module, weights: Mapping[str, nn.Parameter], data: TokenizedSplit, batches: Sequence[list[int]]
) -> dict[str, torch.Tensor]:
    """Key -> float32 tensor shaped like the weight: Σ over batches of the squared loss gradient."""
    device = next(model.parameters()).device
    squared = {key: torch.zeros(weight.shape, dtype=torch.float32, device=device) for key, weight in weights.items()}
    model.requires_grad_(False)
    handles = []
    for key, weight in weights.items():
        weight.requires_grad_(True)
        handles.append(weight.register_post_accumulate_grad_hook(partial(_accumulate_square, squared[key])))
    try:
        with torch.enable_grad():
            for indices in batches:
                model(**model_batch(data, indices, device)).loss.backward()
    finally:
        for handle in handles:
            handle.remove()
        for weight in weights.values():
            weight.grad = None
    return squared


def _accumulate_square(total: torch.Tensor, weight: nn.Parameter) -> None:
    total.add_(weight.grad.float().square())
    weight.grad = None


def top_fraction_counts(scores: dict[str, torch.Tensor], fractions: Sequence[float]) -> dict[str, tuple[int, ...]]:
    """Key -> per fraction f, how many of the key's scores are among the top ``round(f * N)`` of all.

    ``scores`` holds non-negative per-weight scores (any shape; N of them in all) and is consumed:
    each tensor is replaced by its sorted, flattened values to save memory. A weight counts when its
    score reaches the threshold, the ``round(f * N)``-th largest score (ties at the threshold all
    count); a score of exactly zero never counts, so when fewer than ``round(f * N)`` scores are
    positive, every positive score counts.
    """
    for key in list(scores):
        scores[key] = scores[key].detach().flatten().float().sort().values
    sorted_scores = list(scores.values())
    thresholds = _global_thresholds(sorted_scores, fractions)
    return {
        key: tuple((values.numel() - torch.searchsorted(values, thresholds)).tolist())
        for key, values in scores.items()
    }


def _global_thresholds(sorted_scores: Sequence[torch.Tensor], fractions: Sequence[float]) -> torch.Tensor:
    """The ``round(f * N)``-th largest score for every fraction f, shape (F,), exact.

    Binary search over the int32 bit patterns of positive float32 values, all fractions at once:
    the answer is the largest pattern whose value still has at least the wanted count at or above it.
    """
    device = sorted_scores[0].device
    total = sum(values.numel() for values in sorted_scores)
    wanted = torch.tensor([max(1, round(f * total)) for f in fractions], dtype=torch.int64, device=device)
    largest = max(float(values[-1]) for values in sorted_scores)
    low = torch.ones_like(wanted)  # bit pattern 1: the smallest positive float32
    high = torch.full_like(wanted, max(1, _float_bits(largest)))
    while bool((low < high).any()):
        middle = (low + high + 1) // 2
        reaches = _count_at_least(sorted_scores, _bits_float(middle)) >= wanted
        low = torch.where(reaches, middle, low)
        high = torch.where(reaches, high, middle - 1)
    return _bits_float(low)


def _count_at_least(sorted_scores: Sequence[torch.Tensor], thresholds: torch.Tensor) -> torch.Tensor:
    """Number of scores >= each threshold over all tensors, shape like ``thresholds``."""
    count = torch.zeros(thresholds.shape, dtype=torch.int64, device=thresholds.device)
    for values in sorted_scores:
        count += values.numel() - torch.searchsorted(values, thresholds)
    return count


def _float_bits(value: float) -> int:
    return int(torch.tensor([value], dtype=torch.float32).view(torch.int32).item())


def _bits_float(bits: torch.Tensor) -> torch.Tensor:
    return bits.to(torch.int32).view(torch.float32)
