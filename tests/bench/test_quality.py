"""The quality benchmark's fixed rules: the pick from the front, the rate from the grid, the interval."""

import math

import pytest

from bench.quality import (
    FULL, LORA_QV, METHODS, REAL, SEARCHED, Unit, grid_run, kept_rate, paired, pick_from_front, plan,
)  # fmt: skip


def front_row(trial: int, params: int, accuracy: float, n: int = 2) -> dict:
    return {"trial": trial, "trainable_params": params, "values": {"accuracy": accuracy}, "n": n}


def test_the_pick_is_the_most_accurate_row_within_the_budget():
    front = [front_row(0, 10_000, 0.70), front_row(1, 50_000, 0.80), front_row(2, 74_498, 0.81),
             front_row(3, 200_000, 0.90)]  # fmt: skip
    assert pick_from_front(front, "accuracy", 74_498)["trial"] == 2
    assert pick_from_front(front, "accuracy", 74_497)["trial"] == 1


def test_a_tie_goes_to_fewer_parameters_and_an_empty_budget_stops():
    front = [front_row(0, 60_000, 0.8), front_row(1, 40_000, 0.8)]
    assert pick_from_front(front, "accuracy", 74_498)["trial"] == 1
    with pytest.raises(SystemExit):
        pick_from_front(front, "accuracy", 1_000)


def test_the_grid_keeps_the_rate_with_the_best_search_score_and_never_reads_dev():
    rates = REAL.rates(LORA_QV)
    rows = {grid_run("SST-2", LORA_QV, r): {"search_score": s, "dev_score": d}
            for r, s, d in zip(rates, ("0.80", "0.85", "nan"), ("0.99", "0.10", "0.99"))}  # fmt: skip
    assert kept_rate(rows, "SST-2", LORA_QV, rates) == 1e-3
    tied = {run: {**row, "search_score": "0.85"} for run, row in rows.items()}
    assert kept_rate(tied, "SST-2", LORA_QV, rates) == 3e-4


def test_paired_interval_is_the_t_interval_over_the_differences():
    mean, low, high = paired([0.01, 0.02, 0.03])
    assert mean == pytest.approx(0.02)
    assert high - mean == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-5)
    assert mean - low == pytest.approx(high - mean)


def test_every_unit_runs_after_what_it_needs_and_the_pick_after_the_baselines():
    units = plan(REAL, ["SST-2", "MRPC"])
    position = {unit.run: i for i, (unit, _) in enumerate(units)}
    assert len(position) == len(units) == 2 * (1 + 5 * 3 + 5 * 2)
    for unit, needs in units:
        assert all(position[need] < position[unit.run] for need in needs)
    assert METHODS[-1] == SEARCHED
    assert dict(units)[Unit("grid", "SST-2", SEARCHED, 1e-3)] == ("SST-2/search",)
    assert dict(units)[Unit("final", "MRPC", FULL, seed=2)] == tuple(grid_run("MRPC", FULL, r) for r in REAL.rates(FULL))
