"""Sparse deltas: any count per matrix, alone or under LoRA (DSEE), on Linear and Conv1D weights."""

import pytest
import torch

from autopeft.injection import apply_structure
from autopeft.injection.sparse_delta import chosen_entries
from autopeft.space.cost import count_trainable
from autopeft.space.layout import read_layout
from autopeft.space.sparse_masks import residual_scores
from autopeft.space.structure import LoraModules, SparseDeltas, Structure, TunerModules
from tests.space.tiny_models import TINY_MODELS, example_inputs


@pytest.fixture(scope="module", params=["bert", "gpt2", "llama"])
def model(request):
    torch.manual_seed(0)
    return TINY_MODELS[request.param]()


def dsee(layout, counts=(5, 17)) -> Structure:
    """LoRA r2 and a residual sparse delta on the same two matrices of layer 0."""
    places = list(layout.layers[0].matrices)[:2]
    places = [(0, role) for role in places]
    return Structure(lora=LoraModules(dict.fromkeys(places, 2)),
                     sparse=SparseDeltas(dict(zip(places, counts)), "residual"))


def effective_weight(module) -> torch.Tensor:
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    return base.weight.detach().clone()


def test_dsee_trains_exactly_the_chosen_entries_beside_lora_and_removes_bit_for_bit(model):
    layout = read_layout(model)
    structure = dsee(layout)
    inputs = example_inputs(model)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    originals = {place: model.get_submodule(layout.matrix(*place).name).weight for place in structure.sparse.entries}
    with torch.no_grad():
        reference = model(**inputs).logits
    applied = apply_structure(model, structure, layout)
    try:
        assert applied.num_trainable == count_trainable(structure, layout)
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, reference), "zero deltas and LoRA B must not change the output"
        model.train()
        optimizer = torch.optim.SGD(applied.parameters, lr=0.5)
        (model(**inputs).logits.float() - 10).pow(2).mean().backward()
        optimizer.step()
        for place, count in structure.sparse.entries.items():
            module = model.get_submodule(layout.matrix(*place).name)
            moved = torch.nonzero((effective_weight(module) - originals[place].detach()).flatten()).flatten()
            expected = torch.topk(residual_scores(originals[place].detach()).flatten(), count).indices
            assert set(moved.tolist()) == set(expected.tolist())
            assert module.lora_A["autopeft"].weight.grad is not None
    finally:
        applied.remove()
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(before[n], after[n]) for n in before)
    for place, original in originals.items():
        assert model.get_submodule(layout.matrix(*place).name).weight is original
    assert not any(p.requires_grad for p in model.parameters())


def test_deltas_group_under_their_layer_for_layer_schedules(model):
    layout = read_layout(model)
    structure = Structure(sparse=SparseDeltas({(1, next(iter(layout.layers[1].matrices))): 7}, "residual"))
    applied = apply_structure(model, structure, layout)
    try:
        groups = applied.parameters_by_layer(layout)
        assert [p.numel() for p in groups[1]] == [7]
        assert sorted(k for k in groups if k is not None) == [1]
    finally:
        applied.remove()


def test_measured_entries_are_a_prefix_of_the_ranking_and_short_rankings_are_refused(model):
    layout = read_layout(model)
    place = (0, next(iter(layout.layers[0].matrices)))
    module = model.get_submodule(layout.matrix(*place).name)
    ranking = torch.randperm(module.weight.numel(), generator=torch.Generator().manual_seed(1))
    assert chosen_entries(module, 9, "sensitivity", ranking).tolist() == ranking[:9].tolist()
    with pytest.raises(ValueError, match="holds 3 entries"):
        chosen_entries(module, 9, "lottery", ranking[:3])
    with pytest.raises(ValueError, match="holds 0 entries"):
        apply_structure(model, Structure(sparse=SparseDeltas({place: 4}, "sensitivity")), layout)
    with pytest.raises(ValueError, match="on a weight of"):
        chosen_entries(module, module.weight.numel() + 1, "residual", None)
    assert not any(p.requires_grad for p in model.parameters())


def test_a_structure_round_trips_through_json_and_refuses_a_tuner_on_the_same_matrix():
    structure = Structure(lora=LoraModules({(0, "q"): 2}), sparse=SparseDeltas({(0, "q"): 5, (1, "v"): 0}, "residual"))
    assert structure.sparse.entries == {(0, "q"): 5}
    assert Structure.from_json(structure.to_json()) == structure
    assert structure.module_types == ("lora", "sparse")
    with pytest.raises(ValueError, match="same matrix"):
        Structure(tuner=TunerModules("loha", 2, {(0, "q")}), sparse=SparseDeltas({(0, "q"): 5}))
    with pytest.raises(ValueError, match="unknown sparse rule"):
        SparseDeltas({(0, "q"): 5}, "magic")
