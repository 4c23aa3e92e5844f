"""AdaLoRA, the method that changes itself while it trains: its schedule needs the run's length,
its penalty reaches the loss, and its allocator prunes every module down to the target budget."""

from __future__ import annotations

import pytest
import torch

from autopeft.injection import apply_structure
from autopeft.space.cost import count_trainable
from autopeft.space.layout import read_layout
from autopeft.space.structure import Structure, TunerModules
from tests.space.tiny_models import TINY_MODELS, example_inputs

TARGET_RANK = 2
STEPS = 30


@pytest.fixture(params=["bert", "llama"])
def model_and_structure(request):
    torch.manual_seed(0)
    model = TINY_MODELS[request.param]()
    layout = read_layout(model)
    roles = list(layout.layers[0].matrices)[:2]
    places = frozenset((layer.index, role) for layer in layout.layers for role in roles)
    return model, layout, Structure(tuner=TunerModules("adalora", TARGET_RANK, places))


def test_training_prunes_every_module_to_the_target_budget(model_and_structure):
    model, layout, structure = model_and_structure
    inputs = example_inputs(model)
    applied = apply_structure(model, structure, layout, total_steps=STEPS)
    try:
        assert applied.num_trainable == count_trainable(structure, layout)
        optimizer = torch.optim.AdamW(applied.parameters, lr=1e-2)
        model.train()
        for step in range(STEPS):
            loss, task_loss = applied.training_loss(**inputs, labels=_labels(model, inputs))
            assert loss.item() > task_loss.item()  # the orthogonality penalty is in what is minimised
            loss.backward()
            optimizer.step()
            applied.after_optimizer_step(step)
            optimizer.zero_grad()
        kept = sum(int((module.lora_E["autopeft"] != 0).sum()) for module in _adalora_layers(model))
        initial = sum(module.lora_E["autopeft"].numel() for module in _adalora_layers(model))
        assert initial == 3 * len(structure.tuner.places)  # 1.5 x the target rank
        assert kept == TARGET_RANK * len(structure.tuner.places)  # peft's budget: target_r per module
    finally:
        applied.remove()


def test_without_the_run_s_length_it_fails_clearly(model_and_structure):
    model, layout, structure = model_and_structure
    with pytest.raises(ValueError, match="adalora prunes ranks on a schedule of the run's length: give its total steps"):
        apply_structure(model, structure, layout)
    assert not any(p.requires_grad for p in model.parameters())


def _labels(model, inputs):
    if model.config.model_type == "bert":
        return torch.zeros(inputs["input_ids"].shape[0], dtype=torch.long)
    return inputs["input_ids"]


def _adalora_layers(model):
    from peft.tuners.adalora.layer import AdaLoraLayer

    return [m for m in model.modules() if isinstance(m, AdaLoraLayer)]


def test_the_penalty_is_the_one_peft_s_own_forward_adds(model_and_structure):
    model, layout, structure = model_and_structure
    inputs = {**example_inputs(model)}
    inputs["labels"] = _labels(model, inputs)
    applied = apply_structure(model, structure, layout, total_steps=STEPS)
    try:
        with torch.no_grad():
            for module in _adalora_layers(model):  # away from the initial state, where B starts at zero
                module.lora_B["autopeft"].normal_()
            loss, task_loss = applied.training_loss(**inputs)
            through_peft = applied._scheduled(**inputs).loss  # AdaLoraModel.forward: task loss + penalty
        assert loss.item() == pytest.approx(through_peft.item(), rel=1e-5)
        assert loss.item() > task_loss.item()
    finally:
        applied.remove()
