"""SPT sensitivities on tiny random models: exact against brute force, monotone, side-effect free."""

from __future__ import annotations

import itertools

import pytest
import torch

from autopeft.space.sensitivity import TAU_GRID
from autopeft.allocation.spt import measure_spt, top_fraction_counts
from autopeft.allocation.measurement import batch_indices
from autopeft.injection import reset_head
from autopeft.space.layout import read_layout
from autopeft.space.structure import place_key
from tests.allocation.conftest import random_tokens
from tests.space.tiny_models import tiny_bert


def brute_force_counts(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, int]:
    """Counts of each tensor's entries among the global top round(fraction * N), via one sort."""
    everything = torch.cat([s.flatten() for s in scores.values()])
    wanted = max(1, round(fraction * everything.numel()))
    threshold = everything.sort(descending=True).values[wanted - 1]
    threshold = max(float(threshold), float(everything[everything > 0].min()))
    return {key: int((s >= threshold).sum()) for key, s in scores.items()}


def test_top_fraction_counts_equal_a_global_sort():
    generator = torch.Generator().manual_seed(0)
    scores = {
        "a": torch.rand(40, 30, generator=generator) ** 4,
        "b": torch.rand(10, 70, generator=generator) * 0.1,
        "c": torch.zeros(25),  # a matrix the loss never reached
    }
    scores["b"][0, :5] = scores["a"][0, 0]  # ties across matrices
    expected = {f: brute_force_counts({k: v.clone() for k, v in scores.items()}, f) for f in TAU_GRID}
    counts = top_fraction_counts({k: v.clone() for k, v in scores.items()}, TAU_GRID)
    for i, fraction in enumerate(TAU_GRID):
        assert {key: c[i] for key, c in counts.items()} == expected[fraction]
    assert counts["c"] == (0,) * len(TAU_GRID)


def test_fewer_positive_scores_than_wanted_count_every_positive_one():
    counts = top_fraction_counts({"a": torch.tensor([0.0, 0.0, 2.0, 1.0]), "b": torch.zeros(6)}, [0.5, 0.9])
    assert counts == {"a": (2, 2), "b": (0, 0)}


def test_scores_equal_squared_gradients_summed_by_hand():
    torch.manual_seed(0)
    model = tiny_bert()
    layout = read_layout(model)
    data = random_tokens(model, examples=20)
    sensitivity = measure_spt(model, layout, data, batches=3, batch_size=8, seed=5)

    reference = tiny_bert()
    reference.load_state_dict(model.state_dict())
    reset_head(reference, layout, seed=5)
    squared = {}
    for indices in batch_indices(len(data), 3, 8, seed=5):
        reference.zero_grad()
        reference(**data.batch(indices)).loss.backward()
        for layer in layout.layers:
            for role, shape in layer.matrices.items():
                key = place_key((layer.index, role))
                grad = reference.get_submodule(shape.name).weight.grad
                squared[key] = squared.get(key, 0) + grad.square()
    for key, total in squared.items():
        assert sensitivity.matrix_scores[key] == pytest.approx(float(total.sum()), rel=1e-4)
    for i, fraction in enumerate(TAU_GRID):
        expected = brute_force_counts(squared, fraction)
        measured = {key: counts[i] for key, counts in sensitivity.sensitive_counts.items()}
        # float32 accumulation order differs from the hand loop: allow a weight at the threshold to flip
        assert sum(abs(measured[k] - expected[k]) for k in expected) <= 2


def test_scores_differ_across_matrices_and_counts_grow_with_tau(tiny_model):
    layout = read_layout(tiny_model)
    sensitivity = measure_spt(tiny_model, layout, random_tokens(tiny_model), batches=2, batch_size=6)

    keys = {place_key((layer.index, role)) for layer in layout.layers for role in layer.matrices}
    assert set(sensitivity.matrix_scores) == keys == set(sensitivity.sensitive_counts)
    assert sensitivity.total_weights == sum(s.numel for layer in layout.layers for s in layer.matrices.values())
    scores = list(sensitivity.matrix_scores.values())
    assert min(scores) > 0 and max(scores) > 1.5 * min(scores)
    for counts in sensitivity.sensitive_counts.values():
        assert all(a <= b for a, b in itertools.pairwise(counts))
    for i, fraction in enumerate(sensitivity.tau_grid):
        total = sum(counts[i] for counts in sensitivity.sensitive_counts.values())
        assert round(fraction * sensitivity.total_weights) <= total <= sensitivity.total_weights


def test_measuring_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = tiny_bert().train()
    model.requires_grad_(False)
    model.classifier.weight.requires_grad_(True)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]

    measure_spt(model, read_layout(model), random_tokens(model), batches=2, batch_size=4)

    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_same_seed_same_scores_other_seed_other_scores():
    torch.manual_seed(0)
    model = tiny_bert()
    layout, data = read_layout(model), random_tokens(model)
    first = measure_spt(model, layout, data, batches=2, batch_size=4, seed=1)
    again = measure_spt(model, layout, data, batches=2, batch_size=4, seed=1)
    other = measure_spt(model, layout, data, batches=2, batch_size=4, seed=2)
    assert first.matrix_scores == again.matrix_scores
    assert first.sensitive_counts == again.sensitive_counts
    assert first.matrix_scores != other.matrix_scores
