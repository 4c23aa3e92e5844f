"""EVA's vectors on tiny models: what peft measures, how a structure takes them, and that the
model comes back unchanged; the store keeps them under their settings."""

from __future__ import annotations

import pytest
import torch

from autopeft.allocation.eva import measure_eva
from autopeft.allocation.lora_init import MeasuredInit
from autopeft.injection import apply_structure
from autopeft.space.layout import read_layout
from autopeft.space.structure import LoraModules, Structure, place_key
from autopeft.store import Store
from autopeft.store.sensitivity import cached_tensors, save_tensors, sensitivity_key
from tests.allocation.conftest import random_tokens, state
from tests.space.tiny_models import TINY_MODELS

RANK = 4
PARAMS = {"rank": RANK, "seed": 0, "train_digest": "cd" * 32, "text_columns": None, "label_column": None}


@pytest.fixture(scope="module", params=["bert", "llama", "gpt2"])
def measured(request):
    torch.manual_seed(0)
    model = TINY_MODELS[request.param]()
    model.requires_grad_(False)
    layout = read_layout(model)
    before = state(model)
    eva = measure_eva(model, layout, random_tokens(model, examples=64), rank=RANK, batches=4, batch_size=16)
    after = state(model)
    return model, layout, eva, before, after


def test_every_role_matrix_gets_orthonormal_vectors_of_its_input_width(measured):
    _, layout, eva, _, _ = measured
    for layer in layout.layers:
        for role, shape in layer.matrices.items():
            vectors = eva.tensors[place_key((layer.index, role))]
            assert vectors.shape == (RANK, shape.in_features)
            assert torch.allclose(vectors @ vectors.T, torch.eye(RANK), atol=1e-4)
    assert eva.rank == RANK and eva.seconds > 0


def test_measuring_leaves_the_model_as_it_was(measured):
    _, _, _, before, after = measured
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_the_first_vector_is_the_top_direction_of_the_matrix_inputs(measured):
    """EVA's first vector is the top right-singular vector of the (uncentred) inputs it saw."""
    model, layout, eva, _, _ = measured
    role = next(iter(layout.layers[0].matrices))  # GPT-2 has a fused qkv role, no q
    shape = layout.matrix(0, role)
    captured = []
    handle = model.get_submodule(shape.name).register_forward_hook(lambda m, args, out: captured.append(args[0]))
    data = random_tokens(model, examples=64)
    with torch.no_grad():
        batch = data.batch(list(range(64)))
        model(**{k: v for k, v in batch.items() if k != "labels"})
    handle.remove()
    mask = batch["attention_mask"].bool()
    inputs = captured[0][mask]
    top = torch.linalg.svd(inputs - inputs.mean(0), full_matrices=False).Vh[0]
    assert abs(float(top @ eva.tensors[f"0.{role}"][0])) > 0.9


def test_a_structure_takes_the_first_r_vectors_and_starts_at_the_base_output(measured):
    model, layout, eva, _, _ = measured
    first, last = list(layout.layers[0].matrices)[0], list(layout.layers[1].matrices)[-1]
    ranks = {(0, first): 2, (1, last): RANK}
    structure = Structure(lora=LoraModules(ranks, init="eva"))
    inputs = {"input_ids": torch.randint(1, 99, (2, 7))}
    with torch.no_grad():
        base = model(**inputs).logits
    applied = apply_structure(model, structure, layout, eva.for_lora(structure.lora))
    try:
        for place, rank in ranks.items():
            lora_a = model.get_submodule(layout.matrix(*place).name).lora_A["autopeft"].weight
            assert torch.equal(lora_a, eva.tensors[place_key(place)][:rank])
        with torch.no_grad():
            assert torch.allclose(model(**inputs).logits, base, atol=1e-6)  # B starts at zero
    finally:
        applied.remove()


def test_a_rank_beyond_the_measured_vectors_or_missing_vectors_fail_clearly(measured):
    model, layout, eva, _, _ = measured
    role = next(iter(layout.layers[0].matrices))
    too_large = LoraModules({(0, role): RANK + 1}, init="eva")
    with pytest.raises(ValueError, match=f"eva measured 4 rows for 0.{role}, the structure needs 5"):
        eva.for_lora(too_large)
    with pytest.raises(ValueError, match="LoRA init 'eva' needs its measurement"):
        apply_structure(model, Structure(lora=LoraModules({(0, role): 2}, init="eva")), layout)
    assert eva.for_lora(LoraModules({(0, role): 2})) is None


def test_vectors_round_trip_through_the_store_under_their_key(measured, tmp_path):
    _, layout, eva, _, _ = measured
    role = next(iter(layout.layers[0].matrices))
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    key = save_tensors(store, eva.to_bytes(), eva.seconds, model="tiny", task="random", method="eva", params=PARAMS)
    assert key == sensitivity_key(model="tiny", task="random", method="eva", params=PARAMS)
    again = MeasuredInit.from_bytes("eva", *cached_tensors(store, key))
    assert again.seconds == eva.seconds
    assert all(torch.equal(again.tensors[k], eva.tensors[k]) for k in eva.tensors)
    assert cached_tensors(store, sensitivity_key(model="tiny", task="random", method="eva",
                                                 params={**PARAMS, "rank": 8})) is None
    restricted = eva.restricted_to(LoraModules({(0, role): 2}, init="eva"))
    assert list(restricted.tensors) == [f"0.{role}"] and restricted.tensors[f"0.{role}"].shape[0] == 2
