"""Successive halving on Pareto rank, and budget accounting (pure logic, no workers)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import torch

from autopeft.objectives import Objective
from autopeft.scheduler.budget import Budget
from autopeft.scheduler.promotion import Rungs, pareto_levels, promotable
from autopeft.store import TrialRecord
from autopeft.trials import Fidelity

OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]


def trial(trial_id: int, accuracy: float, params: int, rung: int = 0) -> TrialRecord:
    now = datetime.now(timezone.utc)
    return TrialRecord(
        id=trial_id, job_id=1, number=trial_id, state="completed", config={"x": trial_id}, structure={"x": trial_id},
        trainable_params=params, seed=0, fidelity={}, worker="w", created_at=now, started_at=now,
        finished_at=now, wall_time_s=1.0, step_time_s=0.1, peak_memory_bytes=1, error=None,
        values={"accuracy": accuracy}, rung=rung,
    )


def test_pareto_levels_peel_fronts():
    values = torch.tensor([[0.9, -3.0], [0.8, -2.0], [0.7, -2.5], [0.6, -4.0]], dtype=torch.double)
    assert pareto_levels(values) == [0, 0, 1, 2]


def test_the_top_third_by_pareto_rank_is_promoted_once():
    trials = [trial(1, 0.90, 3000), trial(2, 0.80, 100), trial(3, 0.70, 2500), trial(4, 0.60, 9000),
              trial(5, 0.75, 2600), trial(6, 0.50, 8000)]
    first = promotable(trials, promoted=set(), objectives=OBJECTIVES, eta=3)
    assert [t.id for t in first] == [1, 2]  # the front, best accuracy first
    assert promotable(trials, promoted={1, 2}, objectives=OBJECTIVES, eta=3) == []
    assert promotable(trials[:2], promoted=set(), objectives=OBJECTIVES, eta=3) == []  # 2 // 3 = 0


def test_rungs_scale_steps_examples_and_cost():
    base = Fidelity(train_examples=800, steps=50)
    rungs = Rungs(count=3, eta=3)
    assert rungs.fidelity(base, 2).steps == 450 and rungs.fidelity(base, 2).train_examples == 7200
    assert rungs.fidelity(base, 0) == base
    assert [rungs.cost(k) for k in range(3)] == [1, 3, 9] and rungs.top == 2


def test_budget_counts_units_in_flight_and_stops_on_time():
    budget = Budget(units=4)
    assert budget.can_start(1, in_flight=3) and not budget.can_start(3, in_flight=2)
    budget.charge(3, wall_time_s=10)
    assert not budget.can_start(1, in_flight=1) and budget.can_start(1, in_flight=0)
    timed = Budget(units=100, max_time_s=0.01)
    time.sleep(0.02)
    assert timed.stop_reason().startswith("wall-clock budget") and not timed.can_start(1, 0)
    hours = Budget(units=100, max_worker_hours=0.001)
    hours.charge(1, wall_time_s=4)
    assert hours.stop_reason().startswith("compute budget")


def test_a_failing_tell_is_reported_not_swallowed():
    from autopeft.optimizers import Observation
    from autopeft.optimizers.random_search import RandomSearch
    from autopeft.scheduler.proposer import Proposer
    from autopeft.space import parse_space
    from autopeft.space.search_space import bind_space
    from tests.space.tiny_models import tiny_bert

    space = bind_space(parse_space("name: x\nmodules: {lora: {roles: [q], rank: {choices: [0, 4]}}}\n"), tiny_bert())
    errors: list[BaseException] = []
    proposer = Proposer(RandomSearch(space, OBJECTIVES), on_error=errors.append)
    proposer.tell([Observation({"not.a.dimension": 1}, {"accuracy": 0.5})])
    proposer.close()
    assert len(errors) == 1 and isinstance(errors[0], KeyError)  # the point lacks the space's dimension
