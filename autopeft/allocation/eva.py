"""EVA initialisation (Paischer et al., "One initialization to rule them all", 2024): LoRA's A
starts from the top right-singular vectors of each matrix's *inputs* on task data, B at zero.

peft computes the vectors (:func:`peft.tuners.lora.eva.get_eva_state_dict`: incremental PCA over
batches until the components stop changing). We run it once per (model, task, settings) for every
role matrix of the layout at the space's largest rank ``R``, and a module of rank ``r`` takes the
first ``r`` vectors. With peft's ``rho = 1`` the ranks are the structure's own, so the trainable
count stays exact; EVA's rank redistribution (``rho > 1``) would change the structure after it was
chosen and is not used.

Padding positions are excluded through the attention mask; labels are not passed, so a
classification head sees no targets and every position of a causal LM counts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from peft import EvaConfig, LoraConfig
from peft.tuners.lora.eva import get_eva_state_dict
from safetensors.torch import load, save
from torch import nn

from autopeft.allocation.measurement import batch_indices, measuring, model_batch
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import LoraModules, Place, place_key
from autopeft.tasks import TokenizedSplit

EVA_BATCHES = 16
EVA_BATCH_SIZE = 16
"""The measurement's seeded batches (peft cycles through them until the vectors converge)."""

@dataclass(frozen=True)
class EvaComponents:
    """Per role matrix (place key ``"3.q"``), its inputs' top right-singular vectors.

    Attributes:
        components: place key -> tensor (R, in_features), float32, rows by decreasing variance.
        seconds: wall time of the measurement.
    """

    components: Mapping[str, torch.Tensor]
    seconds: float = 0.0

    @property
    def rank(self) -> int:
        """R, the most vectors any matrix has (the largest rank a structure may take)."""
        return max(t.shape[0] for t in self.components.values())

    def initial_a(self, lora: LoraModules | None) -> dict[Place, torch.Tensor] | None:
        """Place -> LoRA A (rank, in_features) of every module of ``lora`` when it starts from EVA
        (else None); ValueError when a module's rank exceeds the vectors measured for its matrix."""
        if lora is None or not lora.starts_from_measurement:
            return None
        initial = {}
        for place, rank in lora.ranks.items():
            vectors = self.components.get(place_key(place))
            if vectors is None or vectors.shape[0] < rank:
                have = 0 if vectors is None else vectors.shape[0]
                raise ValueError(f"EVA measured {have} vectors for {place_key(place)}, the structure needs {rank}")
            initial[place] = vectors[:rank].clone()
        return initial

    def restricted_to(self, lora: LoraModules | None) -> EvaComponents | None:
        """Only what ``lora``'s modules start from, each at its rank (what an export carries)."""
        initial = self.initial_a(lora)
        if initial is None:
            return None
        return EvaComponents(MappingProxyType({place_key(p): a for p, a in initial.items()}), self.seconds)

    def to_bytes(self) -> bytes:
        """The vectors as safetensors bytes (the store keeps them as one blob, ``seconds`` beside it)."""
        return save({key: t.contiguous() for key, t in self.components.items()})

    @classmethod
    def from_bytes(cls, data: bytes, seconds: float = 0.0) -> EvaComponents:
        return cls(MappingProxyType(load(data)), seconds)


def measure_eva(
    model: nn.Module,
    layout: ModelLayout,
    data: TokenizedSplit,
    *,
    rank: int,
    batches: int = EVA_BATCHES,
    batch_size: int = EVA_BATCH_SIZE,
    seed: int = 0,
) -> EvaComponents:
    """EVA vectors for every role matrix of ``layout``, ``rank`` per matrix (capped by its width).

    peft cycles through the ``batches`` seeded batches of ``data`` until every matrix's vectors
    have converged (cosine similarity 0.99 between successive estimates). The model runs in eval
    mode with its task head drawn from ``seed`` and comes back unchanged.
    """
    started = time.perf_counter()
    names = {layout.matrix(layer.index, role).name: (layer.index, role) for layer in layout.layers
             for role in layer.matrices}
    config = LoraConfig(r=rank, target_modules=sorted(names), init_lora_weights="eva",
                        eva_config=EvaConfig(rho=1.0))
    device = next(model.parameters()).device
    inputs = [_unlabelled(model_batch(data, indices, device))
              for indices in batch_indices(len(data), batches, batch_size, seed)]
    with measuring(model, layout, seed):
        vectors = get_eva_state_dict(model, inputs, config, show_progress_bar=False)
    components = {place_key(names[name]): t.detach().float().cpu() for name, t in vectors.items()}
    return EvaComponents(MappingProxyType(components), time.perf_counter() - started)


def _unlabelled(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in batch.items() if name != "labels"}
