"""Every method of the ``methods`` space on every tiny family: exact counts, the base model's output
at step 0, training, clean removal."""

import random

import pytest
import torch

from autopeft.injection import apply_structure
from autopeft.injection.apply import head_parameters
from autopeft.space.cost import count_trainable
from autopeft.space.schema import load_space_spec
from autopeft.space.search_space import bind_space
from tests.space.tiny_models import TINY_MODELS, example_inputs

RANDOM_POINTS = 210
CHANGES_THE_MODEL_WHEN_INJECTED = {"kasa"}
"""KaSA drops r singular components of each base weight by design; every other method starts at
the base model's output (FourierFT only with a zero spectrum, autopeft's setting)."""


@pytest.fixture(scope="module", params=sorted(TINY_MODELS))
def bound(request):
    torch.manual_seed(0)
    model = TINY_MODELS[request.param]()
    return model, bind_space(load_space_spec("methods"), model)


def built_trainable(model, applied) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad) + sum(
        p.numel() for p in applied.native.parameters()
    )


def state(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def assert_same_state(model, before):
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[name], after[name]) for name in before)


def every_method_point(space):
    """One point per offered method: its largest valid size (and last value of each searched
    setting), every layer and role on."""
    for method in space.methods.sizes:
        point = {}
        for dimension in space.dimensions:
            if dimension.name == "method":
                point["method"] = method
            elif dimension.name in space.conditions:
                own = dimension.name.startswith(f"method.{method}.")
                point[dimension.name] = dimension.values[-1 if own else 0]
            else:
                point[dimension.name] = True
        yield method, point


def test_every_method_trains_changes_outputs_and_is_removed_bit_for_bit(bound):
    model, space = bound
    inputs = example_inputs(model)
    head = head_parameters(model, space.layout)
    for method, point in every_method_point(space):
        structure = space.decode(point)
        before = state(model)
        with torch.no_grad():
            reference = model.eval()(**inputs).logits
        applied = apply_structure(model, structure, space.layout, total_steps=10)
        try:
            assert built_trainable(model, applied) == count_trainable(structure, space.layout), method
            if method not in CHANGES_THE_MODEL_WHEN_INJECTED:
                with torch.no_grad():
                    assert torch.allclose(model.eval()(**inputs).logits, reference, atol=1e-5), method
            own = [p for p in applied.parameters if all(p is not h for h in head)]
            optimizer = torch.optim.Adam(own, lr=0.05)
            model.train()
            for step in range(2):
                (model(**inputs).logits.float() - 10).pow(2).mean().backward()
                assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in own), method
                optimizer.step()
                applied.after_optimizer_step(step)
                optimizer.zero_grad()
            with torch.no_grad():
                assert not torch.allclose(model.eval()(**inputs).logits, reference), method
        finally:
            applied.remove()
        assert_same_state(model, before)
        assert not any(p.requires_grad for p in model.parameters())


def test_exact_count_equals_built_count_over_random_points(bound):
    model, space = bound
    rng = random.Random(0)
    checked = 0
    for _ in range(RANDOM_POINTS // len(TINY_MODELS) * 3):
        point = space.from_unit([rng.random() for _ in space.dimensions])
        if not space.is_feasible(point):
            continue
        structure = space.decode(point)
        applied = apply_structure(model, structure, space.layout, total_steps=10)
        try:
            assert built_trainable(model, applied) == space.trainable_params(point), structure.to_json()
        finally:
            applied.remove()
        checked += 1
    assert checked >= RANDOM_POINTS // len(TINY_MODELS)


def test_sizes_and_settings_of_methods_not_chosen_do_not_change_the_encoding(bound):
    _, space = bound
    point = dict(next(p for _, p in every_method_point(space)))
    others = [d for d in space.dimensions
              if d.name in space.conditions and not d.name.startswith(f"method.{point['method']}.")]
    assert ("method.delora.delora_lambda" in {d.name for d in others}) == ("delora" in space.methods.sizes)
    for other in others:
        changed = {**point, other.name: other.values[-1]}
        assert space.encode(changed) == space.encode(point), other.name
        assert space.structure_key(changed) == space.structure_key(point), other.name


def test_a_searched_setting_reaches_the_peft_module_and_the_structure_s_key(bound):
    model, space = bound
    if "delora" not in space.methods.sizes:  # GPT-2's Conv1D: excluded with the reason, not crashed
        assert "Conv1D" in space.methods.excluded["delora"]
        return
    point = next(p for method, p in every_method_point(space) if method == "delora")
    low = {**point, "method.delora.delora_lambda": 1.0}
    structure = space.decode(low)
    assert dict(structure.tuner.settings) == {"delora_lambda": 1.0}
    assert space.structure_key(low) != space.structure_key(point)
    assert space.encode(low) != space.encode(point)
    applied = apply_structure(model, structure, space.layout)
    try:
        bounds = [b for m in model.modules() if hasattr(m, "delora_lambda") for b in m.delora_lambda.values()]
        assert bounds and all(torch.allclose(b, torch.ones_like(b)) for b in bounds)
    finally:
        applied.remove()


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_lora_inits_and_kasa_count_exactly_and_restore_the_base_weights_they_rewrite(family):
    from autopeft.space.layout import read_layout
    from autopeft.space.structure import LORA_INITS, NOT_ON_CONV1D, LoraModules, Structure

    model = TINY_MODELS[family]()
    layout = read_layout(model)
    roles = list(layout.layers[0].matrices)[:2]
    conv1d = layout.matrix(0, roles[0]).conv1d
    for init in LORA_INITS:
        for variant in ("lora", "kasa"):
            if conv1d and (init in NOT_ON_CONV1D or variant in NOT_ON_CONV1D):
                continue
            structure = Structure(lora=LoraModules({(0, r): 4 for r in roles}, variant=variant, init=init))
            before = state(model)
            applied = apply_structure(model, structure, layout, random_measurement(init, roles, layout))
            try:
                assert built_trainable(model, applied) == count_trainable(structure, layout), (init, variant)
            finally:
                applied.remove()
            assert_same_state(model, before)


def random_measurement(init: str, roles, layout) -> dict | None:
    """Rank-4 stand-ins for what a data-driven init measures (EVA's A; CorDA's S, U, V), else None."""
    shapes = {r: layout.matrix(0, r) for r in roles}
    if init == "eva":
        return {(0, r): {"A": torch.randn(4, s.in_features)} for r, s in shapes.items()}
    if init == "corda":
        return {(0, r): {"S": torch.rand(4) + 0.1, "U": torch.randn(4, s.out_features), "V": torch.randn(4, s.in_features)}
                for r, s in shapes.items()}
    return None


def test_sparse_masks_pick_the_largest_entries_by_their_rule():
    from autopeft.space.sparse_masks import magnitude_mask, principal_mask

    layer = torch.nn.Linear(12, 10)
    mask = magnitude_mask(layer, r=2)
    k = 2 * (12 + 10)
    assert mask.shape == layer.weight.shape and int(mask.sum()) == k
    chosen = layer.weight.detach().abs()[mask.bool()]
    assert chosen.min() >= layer.weight.detach().abs()[~mask.bool()].max()
    principal = principal_mask(layer, r=2)
    assert int(principal.sum()) == k and torch.equal(principal, principal_mask(layer, r=2))


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_dsee_in_the_sparse_space_costs_lora_one_rank_up_and_trains_both_halves(family):
    from autopeft.space.structure import Structure

    torch.manual_seed(0)
    model = TINY_MODELS[family]()
    space = bind_space(load_space_spec("sparse"), model)
    point = next(point for method, point in every_method_point(space) if method == "dsee")
    point = {**point, "method.dsee.size": 2, "schedule.kind": "none"}
    structure = space.decode(point)
    assert structure.sparse.rule == "residual" and set(structure.sparse.entries) == set(structure.lora.ranks)
    one_rank_up = Structure(lora=type(structure.lora)(dict.fromkeys(structure.lora.ranks, 3)))
    assert count_trainable(structure, space.layout) == count_trainable(one_rank_up, space.layout)
    before = state(model)
    applied = apply_structure(model, structure, space.layout)
    try:
        assert built_trainable(model, applied) == count_trainable(structure, space.layout)
        model.train()
        (model(**example_inputs(model)).logits.float() - 10).pow(2).mean().backward()
        deltas = [m.parametrizations.weight[0].values for m in model.modules() if hasattr(m, "parametrizations")]
        assert len(deltas) == len(structure.sparse.entries) and all(d.grad.abs().sum() > 0 for d in deltas)
    finally:
        applied.remove()
    assert_same_state(model, before)
