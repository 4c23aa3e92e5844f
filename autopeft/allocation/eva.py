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

from peft import EvaConfig, LoraConfig
from peft.tuners.lora.eva import get_eva_state_dict
from torch import nn

from autopeft.allocation.lora_init import MeasuredInit
from autopeft.allocation.measurement import batch_indices, measuring, model_batch, unlabelled
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import place_key
from autopeft.tasks import TokenizedSplit

EVA_BATCHES = 16
EVA_BATCH_SIZE = 16
"""The measurement's seeded batches (peft cycles through them until the vectors converge)."""


def measure_eva(
    model: nn.Module,
    layout: ModelLayout,
    data: TokenizedSplit,
    *,
    rank: int,
    batches: int = EVA_BATCHES,
    batch_size: int = EVA_BATCH_SIZE,
    seed: int = 0,
) -> MeasuredInit:
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
    inputs = [unlabelled(model_batch(data, indices, device))
              for indices in batch_indices(len(data), batches, batch_size, seed)]
    with measuring(model, layout, seed):
        vectors = get_eva_state_dict(model, inputs, config, show_progress_bar=False)
    parts = {place_key(names[name]): {"A": t.detach().float().cpu()} for name, t in vectors.items()}
    return MeasuredInit.from_parts("eva", parts, time.perf_counter() - started)
