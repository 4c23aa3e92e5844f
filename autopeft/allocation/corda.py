"""CorDA initialisation (Yang et al., "CorDA: Context-oriented decomposition adaptation", 2024),
instruction-previewed mode: LoRA starts from the top-r singular triplets of W C, the weight times
the covariance C of its inputs on task data; the residual W - scale * B A stays frozen.

peft does the work (:func:`peft.tuners.lora.corda.preprocess_corda`: covariance hooks, the SVD
of W C, the crop to r); we run it once per (model, task, settings) for every role matrix of the
layout at the space's largest rank ``R`` and keep the triplets, so a module of rank r takes the
first r. peft's covariance hook reads one sequence per forward call, so the calibration examples
run one at a time, each unpadded. Labels are not passed. The knowledge-preserved mode (the
smallest r triplets) is not offered: it serves keeping pre-trained knowledge, not the task score a
search ranks by.
"""

from __future__ import annotations

import time

from peft import LoraConfig
from peft.tuners.lora.config import CordaConfig
from peft.tuners.lora.corda import preprocess_corda
from torch import nn

from autopeft.allocation.lora_init import MeasuredInit
from autopeft.allocation.measurement import batch_indices, measuring, model_batch, unlabelled
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import place_key
from autopeft.tasks import TokenizedSplit

CORDA_EXAMPLES = 128
"""Calibration sequences (the CorDA paper samples 256 of 2,048 tokens on 7B models; peft warns that
too few make the covariance low-rank, which its damping then absorbs)."""


def measure_corda(
    model: nn.Module, layout: ModelLayout, data: TokenizedSplit, *, rank: int, examples: int = CORDA_EXAMPLES,
    seed: int = 0,
) -> MeasuredInit:
    """CorDA's top-``rank`` triplets of every role matrix of ``layout`` on ``examples`` seeded
    examples of ``data``. The model runs in eval mode with its task head drawn from ``seed`` and
    comes back unchanged."""
    started = time.perf_counter()
    names = {layout.matrix(layer.index, role).name: (layer.index, role) for layer in layout.layers
             for role in layer.matrices}
    config = LoraConfig(r=rank, target_modules=sorted(names), init_lora_weights="corda",
                        corda_config=CordaConfig(corda_method="ipm"))
    device = next(model.parameters()).device
    chosen = batch_indices(len(data), 1, min(examples, len(data)), seed)[0]

    def run_model() -> None:
        for index in chosen:
            model(**unlabelled(model_batch(data, [index], device)))

    parts = {}
    with measuring(model, layout, seed):
        preprocess_corda(model, config, run_model=run_model)
        for name, place in names.items():
            module = model.get_submodule(name)
            eigens = module.eigens
            del module.eigens
            parts[place_key(place)] = {"S": eigens.S_WC.float().cpu(), "U": eigens.U_WC.T.float().cpu().contiguous(),
                                       "V": eigens.V_WC.T.float().cpu().contiguous()}
    return MeasuredInit.from_parts("corda", parts, time.perf_counter() - started)
