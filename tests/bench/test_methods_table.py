"""The methods-table benchmark: sizes near 0.3% by exact counts, the rate chosen on the search
split only, and dev runs wanted only once that choice is made."""

import math

import pytest

from autopeft.models import build_skeleton, resolve_model
from autopeft.models.loading import TaskHead
from autopeft.space.cost import count_trainable
from autopeft.space.layout import read_layout
from autopeft.tasks import TaskKind
from bench.methods_table import (FIRST_RATES, LADDER, METHODS, SEEDS, chosen_rate, nearest_size, rates_tried, run_key,
                                 structure, wanted_runs)


@pytest.fixture(scope="module")
def minilm_layout():
    return read_layout(build_skeleton(resolve_model("minilm"), TaskHead(TaskKind.CLASSIFICATION, 2)))


def test_every_method_gets_the_size_whose_exact_count_is_nearest_the_target(minilm_layout):
    target = 0.003 * minilm_layout.total_params
    for method in ("lora", "loha", "oft", "c3a"):
        size = nearest_size(method, minilm_layout)
        count = count_trainable(structure(method, size, minilm_layout), minilm_layout)
        for other in (size // 2, size * 2):
            try:
                other_count = count_trainable(structure(method, other, minilm_layout), minilm_layout)
            except Exception:  # noqa: BLE001 - a size the method cannot take
                continue
            assert abs(math.log(count / target)) <= abs(math.log(other_count / target)), (method, size, other)
    assert count_trainable(structure("lora", 8, minilm_layout), minilm_layout) == 74_498


def search_row(method, rate, accuracy):
    return {"method": method, "split": "search", "learning_rate": rate, "seed": 0, "accuracy": accuracy}


def test_the_rate_is_chosen_on_the_search_split_and_only_then_are_dev_runs_wanted():
    rows = {run_key(r): r for r in (search_row("lora", 5e-4, 0.70), search_row("lora", 3e-3, 0.81))}
    assert chosen_rate(rows, "lora") is None and not any(r["split"] == "dev" for r in wanted_runs(rows))
    rows[run_key(search_row("lora", 2e-2, float("nan")))] = search_row("lora", 2e-2, float("nan"))  # diverged
    assert chosen_rate(rows, "lora") == 3e-3
    dev = [r for r in wanted_runs(rows) if r["split"] == "dev"]
    assert [(r["method"], r["learning_rate"], r["seed"]) for r in dev] == [("lora", 3e-3, s) for s in SEEDS]
    assert len(wanted_runs(rows)) == len(METHODS) * len(FIRST_RATES) + len(SEEDS)


def test_a_best_rate_at_the_edge_of_those_tried_extends_the_grid_that_way_until_the_ladder_ends():
    rows = {}
    for rate, accuracy in zip(FIRST_RATES, (0.70, 0.75, 0.80)):
        rows[run_key(search_row("c3a", rate, accuracy))] = search_row("c3a", rate, accuracy)
    assert rates_tried(rows, "c3a") == ([*FIRST_RATES, LADDER[-1]], None)
    assert LADDER[-1] in [r["learning_rate"] for r in wanted_runs(rows) if r["method"] == "c3a"]
    rows[run_key(search_row("c3a", LADDER[-1], 0.82))] = search_row("c3a", LADDER[-1], 0.82)
    assert rates_tried(rows, "c3a") == ([*FIRST_RATES, LADDER[-1]], LADDER[-1])  # the ladder's top: chosen there
    for rate, accuracy in zip(FIRST_RATES, (0.80, 0.75, 0.70)):
        rows[run_key(search_row("vera", rate, accuracy))] = search_row("vera", rate, accuracy)
    rows[run_key(search_row("vera", LADDER[0], 0.79))] = search_row("vera", LADDER[0], 0.79)
    assert rates_tried(rows, "vera") == ([LADDER[0], *FIRST_RATES], FIRST_RATES[0])
