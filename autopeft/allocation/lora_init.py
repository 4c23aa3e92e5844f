"""What a data-driven LoRA initialisation starts from, measured once per (model, task, settings).

EVA (:mod:`.eva`) gives each role matrix the top right-singular vectors of its inputs, LoRA's A;
CorDA (:mod:`.corda`) gives the top singular triplets of the weight times its inputs' covariance,
from which peft builds A, B and the residual weight. Both are measured for every role matrix of
the layout at the space's largest rank ``R``, with the rank on the first axis of every tensor, so
a module of rank ``r`` takes the first ``r`` rows of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from safetensors.torch import load, save

from autopeft.space.structure import LoraModules, Place, place_key

PARTS = {"eva": ("A",), "corda": ("S", "U", "V")}
"""Tensors per matrix of each data-driven init, every one with the rank on its first axis:
EVA's A (R, in_features); CorDA's singular values S (R,), left vectors U^T (R, out_features) and
right vectors, multiplied by the inverse covariance, V^T (R, in_features)."""


@dataclass(frozen=True)
class MeasuredInit:
    """Per role matrix, the tensors a data-driven LoRA init starts from.

    Attributes:
        init: ``eva`` or ``corda`` (a key of :data:`PARTS`).
        tensors: ``"3.q"`` (a one-part init) or ``"3.q.S"`` -> float32 tensor, rank on axis 0,
            rows by decreasing importance.
        seconds: wall time of the measurement.
    """

    init: str
    tensors: Mapping[str, torch.Tensor]
    seconds: float = 0.0

    @property
    def rank(self) -> int:
        """R, the most rows any matrix has (the largest rank a structure may take)."""
        return max(t.shape[0] for t in self.tensors.values())

    def for_lora(self, lora: LoraModules | None) -> dict[Place, dict[str, torch.Tensor]] | None:
        """Place -> part -> its first ``rank`` rows, for every module of ``lora`` when it starts
        from this init (else None); ValueError when a module's rank exceeds what was measured."""
        if lora is None or lora.init != self.init:
            return None
        found = {}
        for place, rank in lora.ranks.items():
            parts = {}
            for part in PARTS[self.init]:
                rows = self.tensors.get(_key(self.init, place_key(place), part))
                if rows is None or rows.shape[0] < rank:
                    have = 0 if rows is None else rows.shape[0]
                    raise ValueError(f"{self.init} measured {have} rows for {place_key(place)}, the structure needs {rank}")
                parts[part] = rows[:rank].clone()
            found[place] = parts
        return found

    def restricted_to(self, lora: LoraModules | None) -> MeasuredInit | None:
        """Only what ``lora``'s modules start from, each at its rank (what an export carries)."""
        found = self.for_lora(lora)
        if found is None:
            return None
        tensors = {_key(self.init, place_key(place), part): t for place, parts in found.items() for part, t in parts.items()}
        return MeasuredInit(self.init, MappingProxyType(tensors), self.seconds)

    def to_bytes(self) -> bytes:
        """The tensors as safetensors bytes (the store keeps the init's name and ``seconds`` beside them)."""
        return save({key: t.contiguous() for key, t in self.tensors.items()})

    @classmethod
    def from_bytes(cls, init: str, data: bytes, seconds: float = 0.0) -> MeasuredInit:
        return cls(init, MappingProxyType(load(data)), seconds)

    @classmethod
    def from_parts(cls, init: str, parts: Mapping[str, Mapping[str, torch.Tensor]], seconds: float) -> MeasuredInit:
        """From place key -> part -> tensor (rank on axis 0)."""
        tensors = {_key(init, key, part): t for key, by_part in parts.items() for part, t in by_part.items()}
        return cls(init, MappingProxyType(tensors), seconds)


def _key(init: str, place: str, part: str) -> str:
    """A one-part init keeps the bare place key (EVA's cached vectors were stored so)."""
    return place if len(PARTS[init]) == 1 else f"{place}.{part}"
