"""SPT and IST on the real pretrained MiniLM with SST-2, and 0.5% budgets decoded for every rule."""

from __future__ import annotations

import pytest

from autopeft.space.allocation import ALLOCATION_RULES, allocate
from autopeft.allocation.ist import measure_ist
from autopeft.allocation.spt import measure_spt
from autopeft.models import load_base_model, load_tokenizer
from autopeft.space.cost import count_trainable
from autopeft.space.layout import read_layout
from autopeft.tasks import tokenize_split

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def minilm(minilm_ref, sst2):
    model = load_base_model(minilm_ref, sst2)
    model.requires_grad_(False)
    return model, read_layout(model)


@pytest.fixture(scope="module")
def sst2_train(minilm_ref, sst2):
    return tokenize_split(sst2.train.subset(512, seed=0), sst2.kind, load_tokenizer(minilm_ref), max_length=64)


@pytest.fixture(scope="module")
def spt(minilm, sst2_train):
    model, layout = minilm
    return measure_spt(model, layout, sst2_train, batches=16, batch_size=32)


@pytest.fixture(scope="module")
def ist(minilm, sst2_train):
    model, layout = minilm
    return measure_ist(model, layout, sst2_train, steps=20, probe_batches=2, batch_size=16)


def report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def test_spt_scores_differ_across_layers_and_matrices(spt, minilm, capsys):
    _, layout = minilm
    per_layer = [
        sum(spt.matrix_scores[f"{layer.index}.{role}"] for role in layer.matrices) for layer in layout.layers
    ]
    report(capsys, "SPT score per layer: " + ", ".join(f"{s:.2e}" for s in per_layer))
    assert max(per_layer) > 3 * min(per_layer)
    for layer in layout.layers:
        scores = [spt.matrix_scores[f"{layer.index}.{role}"] for role in layer.matrices]
        assert max(scores) > 3 * min(scores)
    at_one_percent = spt.sensitive_counts_at(0.01)
    assert max(at_one_percent.values()) > 10 * (min(at_one_percent.values()) + 1)


def test_ist_importance_differs_across_layers(ist, minilm, capsys):
    _, layout = minilm
    report(capsys, f"IST on MiniLM/SST-2 (20 steps x 16, 2 probe batches): {ist.seconds:.1f} s; importance "
           + ", ".join(f"{x:.3f}" for x in ist.layer_importance))
    assert len(ist.layer_importance) == layout.num_layers
    assert max(ist.layer_importance) > 1.5 * min(ist.layer_importance)


@pytest.mark.parametrize("rule", ALLOCATION_RULES)
@pytest.mark.parametrize("roles", [("q", "v"), ("q", "k", "v", "o", "up", "down")])
def test_a_half_percent_budget_lands_between_045_and_05_percent(rule, roles, minilm, spt, ist, capsys):
    _, layout = minilm
    budget = int(0.005 * layout.total_params)
    sensitivity = {"uniform": None, "spt": spt, "spt_sparse": spt, "ist": ist}[rule]
    landed = []
    for sharpness in (0.0, 0.5, 1.0, 2.0):
        structure = allocate(layout, sensitivity, budget_params=budget, rule=rule, sharpness=sharpness, roles=roles)
        landed.append(100 * count_trainable(structure, layout) / layout.total_params)
    report(capsys, f"{rule} on {','.join(roles)} at 0.5%: " + ", ".join(f"{x:.4f}%" for x in landed)
           + " (sharpness 0, 0.5, 1, 2)")
    assert all(0.45 <= x <= 0.5 for x in landed)
