"""LISA / IST layer sampling: which parameters train in a period, on a tiny BERT with real modules."""

from __future__ import annotations

import torch

from autopeft.injection import apply_structure
from autopeft.space.layout import read_layout
from autopeft.space.structure import LayerSchedule, LoraModules, Structure
from autopeft.worker.schedules import LayerSampler, train_only
from tests.space.tiny_models import example_inputs, tiny_bert

LORA_EVERY_LAYER = Structure(lora=LoraModules({(layer, role): 4 for layer in range(3) for role in ("q", "v")}))


def test_a_period_trains_only_the_sampled_layers_and_the_head():
    model = tiny_bert()
    layout = read_layout(model)
    applied = apply_structure(model, LORA_EVERY_LAYER, layout)
    try:
        groups = applied.parameters_by_layer(layout)
        assert sorted(k for k in groups if k is not None) == [0, 1, 2] and groups[None]  # the head
        sampler = LayerSampler(LayerSchedule("lisa", active=1, period=5), groups, seed=0)
        layers, active = sampler.sample()
        assert len(layers) == 1
        train_only(applied.parameters, active)
        before = {id(p): p.detach().clone() for p in applied.parameters}
        optimizer = torch.optim.SGD(active, lr=0.5)
        model.train()
        for _ in range(2):  # LoRA B starts at zero: A moves only from the second step
            (model(**example_inputs(model)).logits - 3).pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        moved = {layer for layer, params in groups.items()
                 if any(not torch.equal(before[id(p)], p) for p in params)}  # fmt: skip
        assert moved == {None, layers[0]}
    finally:
        applied.remove()


def test_lisa_is_uniform_and_reproducible_and_ist_follows_the_weights():
    groups = {layer: [torch.nn.Parameter(torch.zeros(1))] for layer in range(4)}
    lisa = [LayerSampler(LayerSchedule("lisa", 2, 10), groups, seed=3).sample()[0] for _ in range(2)]
    assert lisa[0] == lisa[1] and len(lisa[0]) == 2
    sampler = LayerSampler(LayerSchedule("ist", 1, 10, weights=(1e-9, 1e-9, 1e-9, 1.0)), groups, seed=0)
    picks = [sampler.sample()[0][0] for _ in range(50)]
    assert picks.count(3) == 50
