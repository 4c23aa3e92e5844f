"""Entry rankings for sparse updates with a measured rule, on tiny models: the entries are the ones
the rule scores highest (checked against the rule computed by hand), the model comes back
unchanged, and a structure trains exactly the top of the ranking through peft's SHiRA layers."""

from __future__ import annotations

import pytest
import torch

from autopeft.allocation.measurement import batch_indices, measuring, model_batch, role_weights
from autopeft.allocation.sparse_rankings import (
    SparseRanking, measure_lottery_ranking, measure_sensitivity_ranking, measure_spt_with_ranking,
)
from autopeft.allocation.spt import measure_spt
from autopeft.injection import apply_structure, head_parameters
from autopeft.space.cost import count_trainable
from autopeft.space.layout import read_layout
from autopeft.space.structure import Structure, TunerModules, place_key
from tests.allocation.conftest import random_tokens, state
from tests.space.tiny_models import TINY_MODELS

SIZE = 2
BATCHES, BATCH_SIZE, STEPS = 3, 8, 4


@pytest.fixture(scope="module", params=["bert", "llama"])
def measured(request):
    torch.manual_seed(0)
    model = TINY_MODELS[request.param]()
    model.requires_grad_(False)
    layout = read_layout(model)
    data = random_tokens(model, examples=48)
    before = state(model)
    sensitivity = measure_sensitivity_ranking(model, layout, data, size=SIZE, batches=BATCHES, batch_size=BATCH_SIZE)
    lottery = measure_lottery_ranking(model, layout, data, size=SIZE, steps=STEPS, batch_size=BATCH_SIZE)
    return model, layout, data, {"sensitivity": sensitivity, "lottery": lottery}, before


def top_entries(scores: torch.Tensor, count: int) -> set[int]:
    return set(torch.topk(scores.flatten(), count).indices.tolist())


def test_both_measurements_leave_the_model_as_it_was(measured):
    model, _, _, _, before = measured
    after = state(model)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_every_matrix_ranks_as_many_entries_as_the_largest_size_trains(measured):
    _, layout, _, rankings, _ = measured
    for ranking in rankings.values():
        for layer in layout.layers:
            for role, shape in layer.matrices.items():
                ranked = ranking.entries[place_key((layer.index, role))]
                assert ranked.dtype == torch.int32 and ranked.ndim == 1
                assert ranked.numel() == SIZE * (shape.in_features + shape.out_features)
                assert len(set(ranked.tolist())) == ranked.numel() and int(ranked.max()) < shape.numel
        assert ranking.seconds > 0


def test_sensitivity_ranks_by_squared_gradients_summed_by_hand(measured):
    model, layout, data, rankings, _ = measured
    weights = role_weights(model, layout)
    totals = {key: torch.zeros_like(w) for key, w in weights.items()}
    with measuring(model, layout, seed=0), torch.enable_grad():
        for weight in weights.values():
            weight.requires_grad_(True)
        for indices in batch_indices(len(data), BATCHES, BATCH_SIZE, seed=0):
            loss = model(**model_batch(data, indices, torch.device("cpu"))).loss
            for key, grad in zip(weights, torch.autograd.grad(loss, list(weights.values()))):
                totals[key] += grad.square()
    for key, ranked in rankings["sensitivity"].entries.items():
        assert set(ranked.tolist()) == top_entries(totals[key], ranked.numel())


def test_lottery_ranks_by_how_far_a_dense_warm_up_moved_each_entry(measured):
    model, layout, data, rankings, _ = measured
    weights = role_weights(model, layout)
    start = {key: w.detach().clone() for key, w in weights.items()}
    with measuring(model, layout, seed=0):
        trained = [*weights.values(), *head_parameters(model, layout)]
        for parameter in trained:
            parameter.requires_grad_(True)
        optimizer = torch.optim.AdamW(trained, lr=5e-5, weight_decay=0.0)
        with torch.enable_grad():
            for indices in batch_indices(len(data), STEPS, BATCH_SIZE, seed=0):
                model(**model_batch(data, indices, torch.device("cpu"))).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
        moved = {key: (w.detach() - start[key]).abs() for key, w in weights.items()}
    with torch.no_grad():
        for key, weight in weights.items():
            weight.copy_(start[key])
    for key, ranked in rankings["lottery"].entries.items():
        assert set(ranked.tolist()) == top_entries(moved[key], ranked.numel())


@pytest.mark.parametrize("rule", ["sensitivity", "lottery"])
def test_a_sparse_update_trains_the_top_of_the_ranking_at_its_exact_count(measured, rule):
    model, layout, _, rankings, before = measured
    roles = list(layout.layers[0].matrices)[:2]
    structure = Structure(tuner=TunerModules(f"sparse_{rule}", 1, {(0, roles[0]), (1, roles[1])}))
    entries = rankings[rule].entries_for(structure, layout)
    applied = apply_structure(model, structure, layout, sparse_entries=entries)
    try:
        assert applied.num_trainable == count_trainable(structure, layout)
        for place in structure.tuner.places:
            module = model.get_submodule(layout.matrix(*place).name)
            rows, columns = next(iter(module.shira_indices.values()))
            flat = rows * module.in_features + columns
            assert set(flat.tolist()) == set(entries[place].tolist())
    finally:
        applied.remove()
    assert all(torch.equal(before[name], t) for name, t in state(model).items())


def test_a_structure_outside_the_ranking_or_larger_than_it_is_refused(measured):
    model, layout, _, rankings, _ = measured
    role = next(iter(layout.layers[0].matrices))
    too_large = TunerModules("sparse_sensitivity", SIZE + 1, {(0, role)})
    with pytest.raises(ValueError, match="the structure trains"):
        rankings["sensitivity"].entries_for(Structure(tuner=too_large), layout)
    assert rankings["sensitivity"].entries_for(Structure(tuner=TunerModules("sparse_lottery", 1, {(0, role)})), layout) is None
    with pytest.raises(ValueError, match="measured entries"):
        apply_structure(model, Structure(tuner=TunerModules("sparse_sensitivity", 1, {(0, role)})), layout)


def test_a_ranking_round_trips_through_bytes_and_an_export_keeps_only_what_trains(measured):
    _, layout, _, rankings, _ = measured
    ranking = rankings["lottery"]
    again = SparseRanking.from_bytes("lottery", ranking.to_bytes(), ranking.seconds)
    assert again.warmup_peak_bytes == ranking.warmup_peak_bytes > 0  # the warm-up's cost, charged to trials
    assert rankings["sensitivity"].warmup_peak_bytes is None
    assert again.entries.keys() == ranking.entries.keys()
    assert all(torch.equal(again.entries[k], ranking.entries[k]) for k in ranking.entries)
    role = next(iter(layout.layers[1].matrices))
    tuner = TunerModules("sparse_lottery", 1, {(1, role)})
    kept = ranking.restricted_to(Structure(tuner=tuner), layout)
    assert list(kept.entries) == [f"1.{role}"]
    assert kept.entries_for(Structure(tuner=tuner), layout)[(1, role)].tolist() == ranking.entries[f"1.{role}"][: kept.entries[f"1.{role}"].numel()].tolist()


def test_one_gradient_pass_gives_spt_scores_and_ranking_equal_to_two(measured):
    model, layout, data, rankings, _ = measured
    scores, ranking = measure_spt_with_ranking(model, layout, data, size=SIZE, batches=BATCHES, batch_size=BATCH_SIZE)
    alone = measure_spt(model, layout, data, batches=BATCHES, batch_size=BATCH_SIZE)
    assert scores.matrix_scores == alone.matrix_scores
    assert scores.sensitive_counts == alone.sensitive_counts and scores.total_weights == alone.total_weights
    assert ranking.entries.keys() == rankings["sensitivity"].entries.keys()
    assert all(torch.equal(ranking.entries[key], rankings["sensitivity"].entries[key]) for key in ranking.entries)
