"""Sparse deltas: k chosen entries of a frozen weight train, any k per matrix, with or without LoRA.

peft's SHiRA layer trains exactly ``r * (in + out)`` entries and wraps the module, so it can
neither give each matrix its own count (SPT's sparse half) nor sit under a LoRA layer on the same
matrix (DSEE). Here the delta is a torch parametrization of the base module's weight,
``W' = W + scatter(values at indices)``: LoRA (or any peft layer) wrapping the module sees W'
through its base layer, only the k values train (optimizer state grows with k), and removing the
parametrization puts the original weight tensor back, unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from autopeft.space.sparse_masks import residual_scores


class SparseDelta(nn.Module):
    """The parametrization ``weight -> weight + delta``, delta zero except at ``indices``.

    Args:
        indices: 1-D flat indices (row-major into the weight as stored), k distinct entries.
    Attributes:
        values: (k,) trained values, zero at the start, so the model's output is unchanged.
    """

    def __init__(self, indices: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("indices", indices.to(torch.long))
        self.values = nn.Parameter(torch.zeros(indices.numel()))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.flatten().index_add(0, self.indices, self.values.to(weight.dtype)).view_as(weight)


def chosen_entries(module: nn.Module, count: int, rule: str, ranked: torch.Tensor | None) -> torch.Tensor:
    """The ``count`` flat indices of ``module``'s weight a delta trains: the first ``count`` of a
    measured ranking (``ranked``, best first), or, for ``residual``, the largest entries of the
    weight minus its principal approximation. ValueError when a ranking is missing or too short."""
    weight = module.weight
    if count > weight.numel():
        raise ValueError(f"a sparse delta of {count} entries on a weight of {weight.numel()}")
    if rule == "residual":
        return torch.topk(residual_scores(weight.detach()).flatten(), count).indices
    if ranked is None or ranked.numel() < count:
        have = 0 if ranked is None else ranked.numel()
        raise ValueError(f"the {rule} ranking holds {have} entries of a matrix whose sparse delta trains {count}")
    return ranked[:count].to(device=weight.device, dtype=torch.long)


def attach_delta(module: nn.Module, indices: torch.Tensor) -> SparseDelta:
    """Parametrize ``module.weight`` with a zero delta at ``indices``; returns the delta."""
    delta = SparseDelta(indices).to(module.weight.device)
    delta.parameter_order = tuple(module._parameters)
    # unsafe: skips the check that re-evaluates the parametrization at registration (it holds:
    # the delta keeps the weight's shape and dtype).
    parametrize.register_parametrization(module, "weight", delta, unsafe=True)
    return delta


def detach_delta(module: nn.Module) -> None:
    """Remove the delta; ``module.weight`` is the original tensor object again, bit for bit, in
    its original place among the module's parameters (state dicts keep their key order)."""
    order = module.parametrizations.weight[0].parameter_order
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    parameters = dict(module._parameters)
    module._parameters.clear()
    module._parameters.update({name: parameters[name] for name in order})
