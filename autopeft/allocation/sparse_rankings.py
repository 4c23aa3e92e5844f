"""Rankings of weight entries measured on task data, for sparse updates with a measured rule.

A sparse update trains chosen entries of a frozen weight: ``k = r * (in + out)`` of them through
peft's SHiRA layers, or any k per matrix as a sparse delta. Two rules choose them from the task data, each measured once per (model, task,
settings) for every role matrix of the layout and cached in the store:

- ``sensitivity`` (SPT, He et al. 2023): Σ over batches of (∂L/∂w)², the same squared gradients
  the SPT allocator sums per matrix (:func:`autopeft.allocation.spt.squared_gradients`);
- ``lottery`` (LT-SFT, Ansell et al. 2022): |w_T - w_0| after a short dense warm-up that trains
  every role matrix and the task head with AdamW; the model is restored afterwards. LT-SFT runs
  the warm-up per fine-tune; its result does not depend on the structure, so one warm-up serves
  every trial of a job, and its wall time is reported with the measurement.

Each matrix keeps its flat indices (row-major into the weight) sorted by decreasing score, as many
as the space's largest sparse size needs; a structure at a smaller size trains a prefix of them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from safetensors.torch import load, save
from torch import nn

from autopeft.allocation.measurement import batch_indices, measuring, model_batch, peak_memory, role_weights
from autopeft.allocation.spt import spt_scores, spt_squared_gradients
from autopeft.injection import head_parameters
from autopeft.space.layout import ModelLayout
from autopeft.space.sensitivity import Sensitivity
from autopeft.space.structure import Place, Structure, parse_place_key, place_key
from autopeft.space.tuners import measured_mask, ranking_rule
from autopeft.tasks import TokenizedSplit

LOTTERY_STEPS = 64
LOTTERY_BATCH_SIZE = 16
LOTTERY_LEARNING_RATE = 5e-5
"""LT-SFT's dense warm-up: AdamW steps, batch size and rate (a common full fine-tuning rate for BERT)."""


@dataclass(frozen=True)
class SparseRanking:
    """Per role matrix, its entries from best to worst by one measured rule.

    Attributes:
        rule: ``sensitivity`` or ``lottery``.
        entries: place key (``"3.q"``) -> 1-D int32 flat indices into the weight, best first.
        seconds: wall time of the measurement (the lottery's includes its warm-up).
        warmup_peak_bytes: the lottery's peak memory during its dense warm-up (see
            :func:`~autopeft.allocation.measurement.peak_memory`), None for other rules.
    """

    rule: str
    entries: Mapping[str, torch.Tensor]
    seconds: float = 0.0
    warmup_peak_bytes: int | None = None

    def entries_for(self, structure: Structure, layout: ModelLayout) -> dict[Place, torch.Tensor] | None:
        """Place -> the entries ``structure`` trains by this ranking's rule (a SHiRA tuner's
        ``size * (in + out)`` per matrix, a sparse delta's own count), or None when it trains none
        by it; ValueError when a matrix has too few."""
        if ranking_rule(structure) != self.rule:
            return None
        wanted: dict[Place, int] = {}
        tuner = structure.tuner
        if tuner is not None and measured_mask(tuner.method) == self.rule:
            for place in tuner.places:
                shape = layout.matrix(*place)
                wanted[place] = tuner.size * (shape.in_features + shape.out_features)
        if structure.sparse is not None and structure.sparse.rule == self.rule:
            wanted.update(structure.sparse.entries)
        chosen = {}
        for place, count in wanted.items():
            ranked = self.entries.get(place_key(place))
            if ranked is None or ranked.numel() < count:
                have = 0 if ranked is None else ranked.numel()
                raise ValueError(f"the {self.rule} ranking holds {have} entries of {place_key(place)}, "
                                 f"the structure trains {count}")
            chosen[place] = ranked[:count].clone()
        return chosen

    def restricted_to(self, structure: Structure, layout: ModelLayout) -> SparseRanking | None:
        """Only the entries ``structure`` trains (what an export carries), or None when it uses none."""
        chosen = self.entries_for(structure, layout)
        if chosen is None:
            return None
        return dataclasses.replace(self, entries=MappingProxyType({place_key(p): t for p, t in chosen.items()}))

    def to_bytes(self) -> bytes:
        """The rankings as safetensors bytes, the warm-up's peak memory in the metadata (the store
        and an export keep the rule beside them)."""
        metadata = None if self.warmup_peak_bytes is None else {_WARMUP_PEAK: str(self.warmup_peak_bytes)}
        return save({key: t.contiguous() for key, t in self.entries.items()}, metadata)

    @classmethod
    def from_bytes(cls, rule: str, data: bytes, seconds: float = 0.0) -> SparseRanking:
        peak = _metadata(data).get(_WARMUP_PEAK)
        return cls(rule, MappingProxyType(load(data)), seconds, None if peak is None else int(peak))


_WARMUP_PEAK = "warmup_peak_bytes"


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors ``data`` (empty when it has none). Read from the header
    by hand (8-byte little-endian length, then JSON): safetensors reads metadata from files only."""
    header_size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header_size]).get("__metadata__", {})


def _ranking(rule: str, scores: Mapping[str, torch.Tensor], layout: ModelLayout, size: int, started: float
             ) -> SparseRanking:
    """The top ``size * (in + out)`` entries of every matrix by ``scores`` (key -> weight-shaped)."""
    entries = {}
    for key, values in scores.items():
        shape = layout.matrix(*parse_place_key(key))
        count = min(size * (shape.in_features + shape.out_features), values.numel())
        entries[key] = torch.topk(values.flatten().float(), count).indices.to(torch.int32)
    return SparseRanking(rule, MappingProxyType(entries), time.perf_counter() - started)


def measure_sensitivity_ranking(
    model: nn.Module, layout: ModelLayout, data: TokenizedSplit, *, size: int, batches: int = 16,
    batch_size: int = 32, seed: int = 0,
) -> SparseRanking:
    """SPT's per-entry sensitivities of every role matrix on ``batches`` seeded batches, ranked;
    ``size`` is the largest sparse size to rank for. The model comes back unchanged."""
    started = time.perf_counter()
    squared = spt_squared_gradients(model, layout, data, batches=batches, batch_size=batch_size, seed=seed)
    return _ranking("sensitivity", squared, layout, size, started)


def measure_spt_with_ranking(
    model: nn.Module, layout: ModelLayout, data: TokenizedSplit, *, size: int, batches: int = 16,
    batch_size: int = 32, seed: int = 0,
) -> tuple[Sensitivity, SparseRanking]:
    """SPT's matrix scores and its sensitivity entry ranking from one backward pass per batch:
    both sum the same squared gradients over the same batches, so a job that needs both (the
    ``spt_sparse`` rule) measures them once; equal to :func:`~autopeft.allocation.spt.measure_spt`
    and :func:`measure_sensitivity_ranking` with the same settings."""
    started = time.perf_counter()
    squared = spt_squared_gradients(model, layout, data, batches=batches, batch_size=batch_size, seed=seed)
    ranking = _ranking("sensitivity", squared, layout, size, started)
    return spt_scores(squared, started), ranking


def measure_lottery_ranking(
    model: nn.Module, layout: ModelLayout, data: TokenizedSplit, *, size: int, steps: int = LOTTERY_STEPS,
    batch_size: int = LOTTERY_BATCH_SIZE, learning_rate: float = LOTTERY_LEARNING_RATE, seed: int = 0,
) -> SparseRanking:
    """LT-SFT's ranking: how far each entry of every role matrix moves in ``steps`` AdamW steps of
    dense training (role matrices and head, seeded batches). The model comes back unchanged."""
    started = time.perf_counter()
    weights = role_weights(model, layout)
    initial = {key: weight.detach().clone() for key, weight in weights.items()}
    trained = [*weights.values(), *head_parameters(model, layout)]
    try:
        with measuring(model, layout, seed), peak_memory(next(model.parameters()).device) as peak:
            model.requires_grad_(False)
            for parameter in trained:
                parameter.requires_grad_(True)
            optimizer = torch.optim.AdamW(trained, lr=learning_rate, weight_decay=0.0)
            device = next(model.parameters()).device
            with torch.enable_grad():
                for indices in batch_indices(len(data), steps, batch_size, seed):
                    model(**model_batch(data, indices, device)).loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            moved = {key: (weight.detach() - initial[key]).abs() for key, weight in weights.items()}
    finally:
        with torch.no_grad():
            for key, weight in weights.items():
                weight.copy_(initial[key])
    return dataclasses.replace(_ranking("lottery", moved, layout, size, started), warmup_peak_bytes=peak.bytes)
