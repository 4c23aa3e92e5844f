"""The allocator: budgets kept and met over hundreds of random settings, rules behaving as documented."""

from __future__ import annotations

import math
import random
import statistics
import time

import pytest

from autopeft.space.allocation import ALLOCATION_RULES, allocate, largest_sparse_delta
from autopeft.space.sensitivity import Sensitivity
from autopeft.errors import BudgetError, SpaceError
from autopeft.models import build_skeleton, resolve_model
from autopeft.models.loading import TaskHead
from autopeft.space.cost import count_trainable
from autopeft.space.layout import ModelLayout, read_layout
from autopeft.space.structure import Structure, place_key
from autopeft.tasks import TaskKind
from tests.allocation.synthetic import synthetic_sensitivity
from tests.space.tiny_models import TINY_MODELS

COMBINATIONS_PER_LAYOUT = 150


def tiny_layout(family: str) -> ModelLayout:
    return read_layout(TINY_MODELS[family]())


@pytest.fixture(scope="module")
def minilm_layout() -> ModelLayout:
    return read_layout(build_skeleton(resolve_model("minilm"), TaskHead(TaskKind.CLASSIFICATION, 2)))


@pytest.fixture(scope="module")
def smollm2_layout() -> ModelLayout:
    return read_layout(build_skeleton(resolve_model("smollm2"), TaskHead(TaskKind.CAUSAL_LM, 0)))


def allowed_shapes(layout: ModelLayout, roles) -> list:
    return [shape for layer in layout.layers for role, shape in layer.matrices.items() if role in roles]


def guaranteed_budget_range(layout: ModelLayout, roles, variant: str) -> tuple[int, int]:
    """Budgets every rule must land within 10% of: from the larger of ten per-rank costs of the
    widest matrix and rank 1 everywhere, to a quarter of full-rank LoRA everywhere."""
    shapes = allowed_shapes(layout, roles)
    magnitude = [s.out_features if variant == "dora" else 0 for s in shapes]
    rank_one = sum(s.in_features + s.out_features for s in shapes) + sum(magnitude)
    widest = max(s.in_features + s.out_features for s in shapes)
    full_rank = sum(min(s.in_features, s.out_features) * (s.in_features + s.out_features) for s in shapes)
    return layout.head_params + max(10 * widest, rank_one), layout.head_params + full_rank // 4


def check_allocation(layout: ModelLayout, structure, budget: int, roles) -> None:
    count = count_trainable(structure, layout)
    assert 0.9 * budget <= count <= budget, f"{count} of {budget}"
    for (layer, role), rank in structure.lora.ranks.items():
        shape = layout.matrix(layer, role)
        assert role in roles and 1 <= rank <= min(shape.in_features, shape.out_features)
    if structure.sparse is not None:
        assert not set(structure.sparse.entries) & set(structure.lora.ranks)
        depth = largest_sparse_delta(layout, roles, budget, switch_factor=10.0)
        for (layer, role), entries in structure.sparse.entries.items():
            shape = layout.matrix(layer, role)
            assert role in roles and 1 <= entries <= depth * (shape.in_features + shape.out_features)


@pytest.mark.parametrize("family", ["bert", "distilbert", "gpt2", "llama", "t5", "minilm"])
def test_random_budgets_rules_and_sharpness_keep_and_meet_the_budget(family, minilm_layout):
    layout = minilm_layout if family == "minilm" else tiny_layout(family)
    rng = random.Random(family)
    for index in range(COMBINATIONS_PER_LAYOUT):
        sensitivity = synthetic_sensitivity(layout, seed=index % 5)
        roles = rng.sample(layout.roles, rng.randint(1, len(layout.roles)))
        variant = rng.choice(["lora", "dora", "rslora"])
        low, high = guaranteed_budget_range(layout, roles, variant)
        budget = int(math.exp(rng.uniform(math.log(low), math.log(high))))
        rule = rng.choice(ALLOCATION_RULES)
        sharpness = rng.choice([0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
        structure = allocate(layout, sensitivity, budget_params=budget, rule=rule, sharpness=sharpness,
                             roles=roles, variant=variant)
        check_allocation(layout, structure, budget, roles)
        assert structure.lora.variant == variant


@pytest.mark.parametrize("rule", ALLOCATION_RULES)
def test_sharpness_zero_gives_equal_ranks(rule, minilm_layout):
    sensitivity = synthetic_sensitivity(minilm_layout, seed=1)
    for fraction in (0.003, 0.005, 0.01, 0.05):
        budget = int(fraction * minilm_layout.total_params)
        structure = allocate(minilm_layout, sensitivity, budget_params=budget, rule=rule, sharpness=0.0,
                             roles=["q", "k", "v", "o", "up", "down"])
        ranks = list(structure.lora.ranks.values())
        assert max(ranks) - min(ranks) <= 1, "equal up to the one-rank fill of the last parameters"
        check_allocation(minilm_layout, structure, budget, minilm_layout.roles)


def test_uniform_takes_every_allowed_matrix_of_every_layer(minilm_layout):
    structure = allocate(minilm_layout, None, budget_params=200_000, rule="uniform", sharpness=3.0,
                         roles=["q", "v"])
    assert set(structure.lora.ranks) == {(layer, role) for layer in range(6) for role in ("q", "v")}


def test_ist_ranks_follow_layer_importance(minilm_layout):
    importance = Sensitivity(method="ist", layer_importance=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0))
    structure = allocate(minilm_layout, importance, budget_params=300_000, rule="ist", sharpness=1.0,
                         roles=["q", "v"])
    per_layer = [structure.lora.ranks[(layer, "q")] for layer in range(6)]
    assert per_layer == sorted(per_layer) and per_layer[-1] >= 5 * per_layer[0] - 1


def test_ist_switches_unimportant_layers_off(minilm_layout):
    importance = Sensitivity(method="ist", layer_importance=(0.001, 0.001, 1.0, 1.0, 1.0, 1.0))
    structure = allocate(minilm_layout, importance, budget_params=60_000, rule="ist", sharpness=2.0,
                         roles=["q", "v"])
    assert {layer for layer, _ in structure.lora.ranks} == {2, 3, 4, 5}


def spt_sensitivity(layout: ModelLayout, scores: dict[str, float], counts: dict[str, int]) -> Sensitivity:
    """SPT scores where a matrix's sensitive count is the same at every τ (``counts``, default 0)."""
    keys = [place_key((layer.index, role)) for layer in layout.layers for role in layer.matrices]
    return Sensitivity(
        method="spt",
        matrix_scores={key: scores.get(key, 1.0) for key in keys},
        tau_grid=(1e-5, 0.2),
        sensitive_counts={key: (counts.get(key, 0),) * 2 for key in keys},
        total_weights=sum(s.numel for layer in layout.layers for s in layer.matrices.values()),
    )


def test_spt_switch_rule_picks_matrices_with_enough_sensitive_weights(minilm_layout):
    # 100k budget over 36 matrices: reference rank 2, so a q or v reference module has 1,536 parameters
    sensitivity = spt_sensitivity(minilm_layout, {}, {"5.q": 400, "5.v": 300, "4.v": 200, "3.v": 100})
    structure = allocate(minilm_layout, sensitivity, budget_params=100_000, rule="spt", sharpness=0.0,
                         roles=minilm_layout.roles)
    assert set(structure.lora.ranks) == {(5, "q"), (5, "v"), (4, "v")}  # 3.v: 100 < 1,536 / 10
    check_allocation(minilm_layout, structure, 100_000, minilm_layout.roles)


def test_spt_sparse_gives_the_rest_of_the_top_tau_to_sparse_deltas(minilm_layout):
    counts = {"5.q": 400, "5.v": 300, "4.v": 200, "3.v": 100, "2.k": 50}
    sensitivity = spt_sensitivity(minilm_layout, {"3.v": 3.0, "2.k": 2.0}, counts)
    structure = allocate(minilm_layout, sensitivity, budget_params=100_000, rule="spt_sparse", sharpness=0.0,
                         roles=minilm_layout.roles)
    assert set(structure.lora.ranks) == {(5, "q"), (5, "v"), (4, "v")}
    assert structure.sparse.rule == "sensitivity"
    assert dict(structure.sparse.entries) == {(3, "v"): 100, (2, "k"): 50}
    check_allocation(minilm_layout, structure, 100_000, minilm_layout.roles)
    lora_only = allocate(minilm_layout, sensitivity, budget_params=100_000, rule="spt", sharpness=0.0,
                         roles=minilm_layout.roles)
    assert set(lora_only.lora.ranks) == set(structure.lora.ranks) and lora_only.sparse is None
    sparse_spend = count_trainable(structure, minilm_layout) - count_trainable(Structure(lora=structure.lora),
                                                                               minilm_layout)
    assert sparse_spend == 150


def test_spt_ranks_follow_scores(minilm_layout):
    scores = {"5.q": 8.0, "5.v": 4.0, "4.v": 2.0, "4.q": 1.0}
    sensitivity = spt_sensitivity(minilm_layout, scores, dict.fromkeys(scores, 10_000))
    structure = allocate(minilm_layout, sensitivity, budget_params=60_000, rule="spt", sharpness=1.0,
                         roles=minilm_layout.roles)
    ranks = [structure.lora.ranks[(int(k[0]), k[2:])] for k in scores]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] >= 7 * ranks[-1] - 1


def test_spt_falls_back_to_the_best_scores_when_nothing_passes(minilm_layout):
    sensitivity = spt_sensitivity(minilm_layout, {"2.up": 9.0, "3.down": 8.0}, {})
    structure = allocate(minilm_layout, sensitivity, budget_params=20_000, rule="spt", sharpness=1.0,
                         roles=minilm_layout.roles)
    assert list(structure.lora.ranks) == [(2, "up")]
    check_allocation(minilm_layout, structure, 20_000, minilm_layout.roles)


def test_spt_adds_matrices_by_score_when_the_picked_ones_cannot_absorb_the_budget(minilm_layout):
    sensitivity = spt_sensitivity(minilm_layout, {"5.q": 9.0, "4.q": 8.0, "3.q": 7.0}, {"5.q": 10**6})
    # full-rank LoRA on one 384 x 384 matrix holds 294,912 parameters
    structure = allocate(minilm_layout, sensitivity, budget_params=500_000, rule="spt", sharpness=1.0,
                         roles=["q"])
    assert set(structure.lora.ranks) == {(5, "q"), (4, "q")}
    check_allocation(minilm_layout, structure, 500_000, ["q"])


def test_spt_fallback_matrices_without_any_score_still_take_ranks(minilm_layout):
    scores = {f"{layer}.q": 0.0 for layer in range(5)} | {"5.q": 9.0}
    sensitivity = spt_sensitivity(minilm_layout, scores, {"5.q": 10**6})
    structure = allocate(minilm_layout, sensitivity, budget_params=500_000, rule="spt", sharpness=1.0,
                         roles=["q"])
    assert structure.lora.ranks[(5, "q")] == 384
    check_allocation(minilm_layout, structure, 500_000, ["q"])


@pytest.mark.parametrize("rule", ALLOCATION_RULES)
def test_a_budget_below_the_smallest_allocation_is_one_clear_error(rule, minilm_layout):
    sensitivity = synthetic_sensitivity(minilm_layout, seed=0)
    with pytest.raises(BudgetError) as error:
        allocate(minilm_layout, sensitivity, budget_params=1_000, rule=rule, sharpness=1.0, roles=["q", "v"])
    assert "below the smallest" in str(error.value) and "\n" not in str(error.value)


def test_uniform_needs_rank_one_everywhere(minilm_layout):
    # 12 matrices of 768 parameters per rank + 770 head = 9,986; one fewer parameter cannot be spent
    with pytest.raises(BudgetError, match="9,986"):
        allocate(minilm_layout, None, budget_params=9_985, rule="uniform", sharpness=0.0, roles=["q", "v"])
    allocate(minilm_layout, None, budget_params=9_986, rule="uniform", sharpness=0.0, roles=["q", "v"])


def test_a_budget_beyond_full_rank_is_one_clear_error(minilm_layout):
    with pytest.raises(BudgetError, match="beyond full-rank"):
        allocate(minilm_layout, None, budget_params=10**9, rule="uniform", sharpness=0.0, roles=["q"])


def test_missing_scores_and_unknown_roles_are_refused(minilm_layout):
    with pytest.raises(ValueError, match="measure_spt"):
        allocate(minilm_layout, None, budget_params=100_000, rule="spt", sharpness=1.0, roles=["q"])
    with pytest.raises(ValueError, match="measure_ist"):
        allocate(minilm_layout, Sensitivity(method="spt"), budget_params=100_000, rule="ist", sharpness=1.0,
                 roles=["q"])
    with pytest.raises(SpaceError, match="gate"):
        allocate(minilm_layout, None, budget_params=100_000, rule="uniform", sharpness=1.0, roles=["gate"])


def test_sensitivity_json_round_trip(minilm_layout):
    sensitivity = synthetic_sensitivity(minilm_layout, seed=3)
    assert Sensitivity.from_json(sensitivity.to_json()) == sensitivity


def test_sensitive_counts_interpolate_between_grid_points(minilm_layout):
    sensitivity = spt_sensitivity(minilm_layout, {}, {})
    sensitivity = Sensitivity.from_json(
        {**sensitivity.to_json(), "tau_grid": [0.001, 0.1], "sensitive_counts": {"0.q": [10, 1000]}}
    )
    assert sensitivity.sensitive_counts_at(0.01)["0.q"] == pytest.approx(505)  # halfway in log τ
    assert sensitivity.sensitive_counts_at(0.0005)["0.q"] == pytest.approx(5)  # proportional below
    assert sensitivity.sensitive_counts_at(0.5)["0.q"] == 1000  # clamped above


@pytest.mark.parametrize(("layout_name", "limit_ms"), [("minilm_layout", 10), ("smollm2_layout", 50)])
def test_one_allocation_takes_milliseconds(layout_name, limit_ms, request, capsys):
    layout = request.getfixturevalue(layout_name)
    sensitivity = synthetic_sensitivity(layout, seed=0)
    budgets = [int(f * layout.total_params) for f in (0.003, 0.005, 0.01, 0.02)]
    times = []
    for rule in ALLOCATION_RULES:
        for budget in budgets:
            for sharpness in (0.0, 1.0, 3.0):
                started = time.perf_counter()
                allocate(layout, sensitivity, budget_params=budget, rule=rule, sharpness=sharpness,
                         roles=layout.roles)
                times.append(1000 * (time.perf_counter() - started))
    with capsys.disabled():
        print(f"\n{layout.model_type}, {len(allowed_shapes(layout, layout.roles))} matrices: "
              f"allocate median {statistics.median(times):.2f} ms, max {max(times):.2f} ms")
    assert statistics.median(times) < limit_ms
