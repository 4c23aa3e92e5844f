"""CorDA's triplets on tiny models (Linear and GPT-2's Conv1D): what peft measures, that the model
comes back unchanged, and that a structure starting from them keeps the base model's output and
leaves its weights as they were once removed."""

from __future__ import annotations

import pytest
import torch

from autopeft.allocation.corda import measure_corda
from autopeft.allocation.lora_init import MeasuredInit
from autopeft.injection import apply_structure
from autopeft.space.layout import read_layout
from autopeft.space.structure import LoraModules, Structure, place_key
from tests.allocation.conftest import random_tokens, state
from tests.space.tiny_models import TINY_MODELS

RANK = 4


@pytest.fixture(scope="module", params=["bert", "llama", "gpt2"])
def measured(request):
    torch.manual_seed(0)
    model = TINY_MODELS[request.param]()
    model.requires_grad_(False)
    layout = read_layout(model)
    before = state(model)
    corda = measure_corda(model, layout, random_tokens(model, examples=32), rank=RANK, examples=16)
    return model, layout, corda, before


def test_every_role_matrix_gets_its_top_triplets_and_the_model_is_unchanged(measured):
    model, layout, corda, before = measured
    for layer in layout.layers:
        for role, shape in layer.matrices.items():
            key = place_key((layer.index, role))
            values, left, right = (corda.tensors[f"{key}.{part}"] for part in ("S", "U", "V"))
            assert values.shape == (RANK,) and bool((values[:-1] >= values[1:]).all())
            assert left.shape == (RANK, shape.out_features) and right.shape == (RANK, shape.in_features)
            assert torch.allclose(left @ left.T, torch.eye(RANK), atol=1e-4)  # U's columns are orthonormal
    assert corda.rank == RANK and corda.seconds > 0
    after = state(model)
    assert all(torch.equal(before[name], after[name]) for name in before) and not hasattr(
        model.get_submodule(layout.matrix(0, next(iter(layout.layers[0].matrices))).name), "eigens")


def test_a_structure_starts_at_the_base_output_and_removal_restores_the_weights(measured):
    model, layout, corda, _ = measured
    first, last = list(layout.layers[0].matrices)[0], list(layout.layers[1].matrices)[-1]
    structure = Structure(lora=LoraModules({(0, first): 2, (1, last): RANK}, init="corda"))
    inputs = {"input_ids": torch.randint(1, 99, (2, 7))}
    before = state(model)
    with torch.no_grad():
        base = model(**inputs).logits
    applied = apply_structure(model, structure, layout, corda.for_lora(structure.lora))
    try:
        weight = model.get_submodule(layout.matrix(0, first).name).base_layer.weight
        assert not torch.equal(weight, before[f"{layout.matrix(0, first).name}.weight"])  # the residual
        with torch.no_grad():
            assert torch.allclose(model(**inputs).logits, base, atol=1e-4)
    finally:
        applied.remove()
    after = state(model)
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_the_triplets_round_trip_through_bytes_and_a_rank_beyond_them_fails_clearly(measured):
    _, layout, corda, _ = measured
    again = MeasuredInit.from_bytes("corda", corda.to_bytes(), corda.seconds)
    assert all(torch.equal(again.tensors[k], t) for k, t in corda.tensors.items())
    role = next(iter(layout.layers[0].matrices))
    with pytest.raises(ValueError, match=f"corda measured 4 rows for 0.{role}, the structure needs 5"):
        corda.for_lora(LoraModules({(0, role): RANK + 1}, init="corda"))
    assert corda.for_lora(LoraModules({(0, role): 2}, init="eva")) is None
