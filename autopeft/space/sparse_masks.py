"""Which entries of a weight matrix a sparse update trains: SHiRA masks chosen by a rule.

peft's SHiRA tuner trains ``k = r * (in + out)`` chosen entries of a frozen weight (index and value
storage, so memory and optimizer state grow with k, not with the matrix) and ships one rule, a
random mask (HFT-style). It accepts any other rule as a mask function ``mask(base_layer, r) ->
0/1 tensor shaped like the weight``; these are written here because peft has no others:

- ``magnitude``: the k entries of largest |w|;
- ``principal``: LIFT's rule, the k largest entries of the rank-8 approximation of W (its
  principal components), from an exact SVD, so a reload picks the same entries.

Both are deterministic functions of the base weight, so an export rebuilds the trial's mask on
the user's copy of the model. The measured rules (``sensitivity``, ``lottery``) rank entries on
task data once per job (:mod:`autopeft.allocation.sparse_rankings`); :class:`EntriesMask` trains
the top of that ranking, and an export carries the chosen entries beside its config.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

PRINCIPAL_RANK = 8


def _top_k_mask(scores: torch.Tensor, k: int, like: torch.Tensor) -> torch.Tensor:
    flat = torch.zeros(scores.numel(), dtype=like.dtype, device=like.device)
    flat[torch.topk(scores.flatten(), k).indices] = 1
    return flat.view_as(scores)


def _entries(base_layer: nn.Module, r: int) -> int:
    out_features, in_features = base_layer.weight.shape
    return r * (in_features + out_features)


def magnitude_mask(base_layer: nn.Module, r: int, **_) -> torch.Tensor:
    """1 on the ``r * (in + out)`` entries of largest magnitude, 0 elsewhere (shape of the weight)."""
    weight = base_layer.weight.detach()
    return _top_k_mask(weight.abs().float(), _entries(base_layer, r), weight)


def principal_approximation(weight: torch.Tensor) -> torch.Tensor:
    """The rank-8 approximation of ``weight`` (float32), from an exact SVD."""
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    rank = min(PRINCIPAL_RANK, s.numel())
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


def residual_scores(weight: torch.Tensor) -> torch.Tensor:
    """DSEE's support scores: |W - its rank-8 approximation| (the sparse part a low-rank update
    misses; DSEE decomposes W with GreBsmo, an exact truncated SVD stands in for it here)."""
    return (weight.float() - principal_approximation(weight)).abs()


def principal_mask(base_layer: nn.Module, r: int, **_) -> torch.Tensor:
    """1 on the largest entries of the rank-8 approximation of the weight (LIFT)."""
    weight = base_layer.weight.detach()
    return _top_k_mask(principal_approximation(weight).abs(), _entries(base_layer, r), weight)


MASK_FUNCTIONS = {"magnitude": magnitude_mask, "principal": principal_mask}


class EntriesMask:
    """A SHiRA mask function over given entries: each matrix trains the first ``r * (in + out)``
    of its ranked flat indices (row-major into the weight, best first).

    ``entries`` maps each base module (by identity) to its ranking, a 1-D integer tensor.
    ValueError for a module without a ranking, or with fewer ranked entries than ``r`` needs.
    """

    def __init__(self, entries: Mapping[nn.Module, torch.Tensor]) -> None:
        self._entries = dict(entries)

    def __call__(self, base_layer: nn.Module, r: int, **_) -> torch.Tensor:
        ranked = self._entries.get(base_layer)
        wanted = _entries(base_layer, r)
        if ranked is None or ranked.numel() < wanted:
            have = 0 if ranked is None else ranked.numel()
            raise ValueError(f"{have} measured entries for a matrix whose sparse update at r={r} trains {wanted}")
        weight = base_layer.weight
        flat = torch.zeros(weight.numel(), dtype=weight.dtype, device=weight.device)
        flat[ranked[:wanted].to(device=weight.device, dtype=torch.long)] = 1
        return flat.view_as(weight)
