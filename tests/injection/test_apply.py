"""Every module type, alone and mixed, on every family: exact counts, training, exact removal."""

import random

import pytest
import torch

from autopeft.injection import apply_structure
from autopeft.injection.apply import head_parameters
from autopeft.space.cost import count_trainable
from autopeft.space.layout import read_layout
from tests.injection.random_structures import SPARSE_METHODS, random_entries, random_structure, union_structure
from tests.space.tiny_models import TINY_MODELS, example_inputs

CONFIGS_PER_ARCHITECTURE = 200


@pytest.fixture(scope="module", params=sorted(TINY_MODELS))
def model(request):
    torch.manual_seed(0)
    return TINY_MODELS[request.param]()


def built_trainable(model, applied) -> int:
    """Trainable parameters counted on the built model and the native modules attached to it."""
    in_model = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return in_model + sum(p.numel() for p in applied.native.parameters())


def test_exact_count_equals_built_count_for_random_structures(model):
    layout = read_layout(model)
    rng = random.Random(0)
    sparse_rules = set()
    for index in range(CONFIGS_PER_ARCHITECTURE):
        structure = random_structure(layout, rng)
        applied = apply_structure(model, structure, layout,
                                  sparse_entries=random_entries(structure, layout, seed=index))
        try:
            assert built_trainable(model, applied) == count_trainable(structure, layout), structure.to_json()
        finally:
            applied.remove()
        sparse_rules |= {structure.tuner.method} if structure.tuner else set()
    conv1d = any(shape.conv1d for layer in layout.layers for shape in layer.matrices.values())
    assert sparse_rules == (set() if conv1d else set(SPARSE_METHODS))


def test_union_of_every_module_type_trains_and_removes_bit_for_bit(model):
    layout = read_layout(model)
    inputs = example_inputs(model)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        reference = model(**inputs).logits

    applied = apply_structure(model, union_structure(layout), layout)
    try:
        assert built_trainable(model, applied) == count_trainable(union_structure(layout), layout)
        model.train()
        optimizer = torch.optim.AdamW(applied.parameters, lr=1e-2)
        for _ in range(2):
            loss = (model(**inputs).logits.float() - 10).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        with torch.no_grad():
            adapted = model.eval()(**inputs).logits
        assert not torch.allclose(adapted, reference), "the modules changed nothing"
    finally:
        applied.remove()

    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[name], after[name]) for name in before)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reference)
    assert not any(p.requires_grad for p in model.parameters())


def test_failed_injection_leaves_the_model_untouched(model):
    layout = read_layout(model)
    structure = union_structure(layout)
    broken = type(structure)(lora=structure.lora, prefix={len(layout.layers) + 5: 2})  # no such layer
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(IndexError):
        apply_structure(model, broken, layout)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(before[n], after[n]) for n in before)


def _alone(structure, module_type):
    from autopeft.space.structure import Structure

    fields = {
        "lora": {"lora": structure.lora},
        "ia3": {"ia3": structure.ia3},
        "serial_adapter": {"serial_adapter": structure.serial_adapter},
        "parallel_adapter": {"parallel_adapter": structure.parallel_adapter},
        "prefix": {"prefix": structure.prefix},
    }
    return Structure(**fields[module_type])


@pytest.mark.parametrize("module_type", ["lora", "ia3", "serial_adapter", "parallel_adapter", "prefix"])
def test_each_module_type_alone_receives_gradients_and_changes_outputs(model, module_type):
    layout = read_layout(model)
    structure = _alone(union_structure(layout), module_type)
    inputs = example_inputs(model)
    with torch.no_grad():
        reference = model(**inputs).logits
    applied = apply_structure(model, structure, layout)
    try:
        model.train()
        head = head_parameters(model, layout)
        own = [p for p in applied.parameters if all(p is not h for h in head)]
        optimizer = torch.optim.SGD(own, lr=0.5)
        for _ in range(2):
            (model(**inputs).logits.float() - 10).pow(2).mean().backward()
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
            optimizer.step()
            optimizer.zero_grad()
        with torch.no_grad():
            assert not torch.allclose(model.eval()(**inputs).logits, reference)
    finally:
        applied.remove()


def test_each_module_kind_trains_at_its_own_learning_rate_factor(model):
    from autopeft.space.structure import Structure, TunerModules
    from autopeft.space.tuners import rate_factor

    layout = read_layout(model)
    roles = sorted(layout.layers[0].matrices)
    structure = Structure(tuner=TunerModules("fourierft", 4, frozenset({(0, roles[0])})), ia3=frozenset({(1, roles[-1])}))
    applied = apply_structure(model, structure, layout)
    try:
        groups = {group["rate_factor"]: group["params"] for group in applied.optimizer_groups()}
        assert set(groups) - {1.0} == {rate_factor("fourierft"), rate_factor("ia3")}
        assert rate_factor("ia3") > rate_factor("fourierft") > 1.0 == rate_factor("lora")
        assert {id(p) for p in groups.get(1.0, [])} == {id(p) for p in head_parameters(model, layout)}
        assert sorted(id(p) for ps in groups.values() for p in ps) == sorted(id(p) for p in applied.parameters)
        ia3 = groups[rate_factor("ia3")][:1]
        assert applied.optimizer_groups(ia3) == [{"params": ia3, "rate_factor": rate_factor("ia3")}]
    finally:
        applied.remove()


def test_sparse_deltas_train_at_shira_s_factor_beside_lora_at_the_rate(model):
    from autopeft.space.structure import LoraModules, SparseDeltas, Structure
    from autopeft.space.tuners import rate_factor

    layout = read_layout(model)
    place = (0, sorted(layout.layers[0].matrices)[0])
    dsee = Structure(lora=LoraModules({place: 2}), sparse=SparseDeltas({place: 5}, "residual"))
    applied = apply_structure(model, dsee, layout)
    try:
        groups = {group["rate_factor"]: group["params"] for group in applied.optimizer_groups()}
        assert set(groups) == {1.0, rate_factor("shira")} and rate_factor("shira") > 1.0
        deltas = [m.parametrizations.weight[0].values for m in model.modules() if hasattr(m, "parametrizations")]
        assert [id(p) for p in groups[rate_factor("shira")]] == [id(d) for d in deltas]
    finally:
        applied.remove()
