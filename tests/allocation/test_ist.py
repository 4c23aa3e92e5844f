"""IST layer importance on tiny random models: one positive score per layer, model restored bit for bit."""

from __future__ import annotations

import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from autopeft.allocation.ist import measure_ist
from autopeft.space.layout import read_layout
from tests.allocation.conftest import random_tokens
from tests.space.tiny_models import example_inputs, tiny_llama


def test_importance_per_layer_and_the_model_comes_back_bit_for_bit(tiny_model):
    layout = read_layout(tiny_model)
    inputs = example_inputs(tiny_model)
    before = {name: tensor.clone() for name, tensor in tiny_model.state_dict().items()}
    with torch.no_grad():
        reference = tiny_model(**inputs).logits
    rng_before = torch.get_rng_state()

    sensitivity = measure_ist(
        tiny_model, layout, random_tokens(tiny_model), steps=6, probe_batches=2, batch_size=6, learning_rate=1e-2
    )

    assert sensitivity.method == "ist"
    assert len(sensitivity.layer_importance) == layout.num_layers
    assert min(sensitivity.layer_importance) > 0
    assert len(set(sensitivity.layer_importance)) > 1
    after = tiny_model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not any(isinstance(module, BaseTunerLayer) for module in tiny_model.modules())
    with torch.no_grad():
        assert torch.equal(tiny_model(**inputs).logits, reference)
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_no_suppression_means_no_loss_increase_anywhere():
    """Probes share their batches, so scaling by 1 reproduces the all-active loss exactly."""
    torch.manual_seed(0)
    model = tiny_llama()
    sensitivity = measure_ist(model, read_layout(model), random_tokens(model), steps=3, probe_batches=2,
                              batch_size=4, suppression=1.0)
    assert sensitivity.layer_importance == (1.0,) * 3


def test_same_seed_same_importance():
    torch.manual_seed(0)
    model = tiny_llama()
    layout, data = read_layout(model), random_tokens(model)
    first = measure_ist(model, layout, data, steps=3, probe_batches=2, batch_size=4, seed=3)
    again = measure_ist(model, layout, data, steps=3, probe_batches=2, batch_size=4, seed=3)
    assert first.layer_importance == again.layer_importance
