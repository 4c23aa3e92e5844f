"""The proxy study's fixed rules: equal-cost designs, a 4x reference on dev, resumable run keys,
a design chosen on one cell only and the verdict cells training only what the verdict needs."""

import json
import math
from dataclasses import replace

from bench.proxy_study import (
    CHOICE, REFERENCE, REFERENCE_AGAIN, REFERENCES, Design, agreement, agreements, choose, designs, one_class_line,
    one_class_scores, owned, pooled_agreements, reference, reference_noise, references, still_current, units,
)
from bench.shards import Shard

SEARCH_SIZE = 1000


def training_tokens(design: Design) -> int:
    fidelity = design.fidelity
    return design.seeds * fidelity.steps * fidelity.batch_size * fidelity.max_length


def scored_tokens(design: Design) -> int:
    fidelity = design.fidelity
    return design.seeds * (fidelity.eval_examples or SEARCH_SIZE) * fidelity.max_length


def test_every_design_spends_the_default_proxys_tokens():
    table = designs(64, SEARCH_SIZE)
    default = table["default"]
    for name, design in table.items():
        # a scored example's forward pass costs about a third of a trained one's forward and backward
        cost = training_tokens(design) + scored_tokens(design) / 3
        budget = training_tokens(default) + scored_tokens(default) / 3
        assert 0.9 * budget <= cost <= 1.05 * budget, name


def test_the_reference_trains_four_times_longer_and_is_the_only_run_scored_on_dev():
    assert reference(64, 60_000).steps == 4 * designs(64, SEARCH_SIZE)["default"].fidelity.steps
    assert reference(128, 3_000).train_examples == 3_000  # capped at the training split
    plan = {"SST-2": {REFERENCE: Design(reference(64, 60_000))} | designs(64, SEARCH_SIZE)}
    runs = list(units({"lora": 2}, plan))
    assert {run.split for run in runs if run.design == REFERENCE} == {"dev"}
    assert {run.split for run in runs if run.design != REFERENCE} == {"search"}
    assert len(runs) == 2 * (len(plan["SST-2"]) + 1)  # "two seeds" runs twice
    assert len({run.key for run in runs}) == len(runs)


def test_a_changed_fidelity_is_a_new_run_not_a_reused_row():
    plan = {"SST-2": designs(64, SEARCH_SIZE)}
    changed = {"SST-2": {**plan["SST-2"], "default": Design(replace(plan["SST-2"]["default"].fidelity, steps=151))}}
    before = {run.key for run in units({"lora": 1}, plan) if run.design == "default"}
    after = {run.key for run in units({"lora": 1}, changed) if run.design == "default"}
    assert before.isdisjoint(after)
    assert {run.key for run in units({"lora": 1}, plan, steps_scale=0.5)}.isdisjoint(
        {run.key for run in units({"lora": 1}, plan)}
    )


def two_task_plan() -> dict[str, dict[str, Design]]:
    table = references(64, 60_000) | designs(64, SEARCH_SIZE)
    return {"SST-2": table, "MRPC": table}


def test_the_reference_repeats_at_other_seeds_on_the_choice_cell_only():
    runs = list(units({"lora": 3, "autopeft": 2}, two_task_plan()))
    first = {(u.task, u.space, u.index): u for u in runs if u.design == REFERENCE}
    again = [u for u in runs if u.design == REFERENCE_AGAIN]
    assert all(u.split == "dev" and u.fidelity == first[u.structure].fidelity for u in again)
    assert all(u.seed != first[u.structure].seed for u in again)
    assert {(u.task, u.space) for u in again if u.needed(None)} == {CHOICE}
    assert not any(u.needed("longer steps") for u in again if (u.task, u.space) != CHOICE)


def test_shards_split_whole_structures_and_verdict_cells_wait_for_the_choice():
    runs = list(units({"lora": 3, "autopeft": 2}, two_task_plan()))
    halves = [owned(runs, Shard(i, 2)) for i in range(2)]
    assert sorted(map(id, halves[0] + halves[1])) == sorted(map(id, runs))
    assert not {u.structure for u in halves[0]} & {u.structure for u in halves[1]}
    choice_cell = [u for u in runs if (u.task, u.space) == CHOICE]
    verdict = [u for u in runs if (u.task, u.space) != CHOICE]
    assert all(u.needed(None) for u in choice_cell)
    assert {u.design for u in verdict if u.needed(None)} == {REFERENCE, "default"}  # one reference seed
    assert {u.design for u in verdict if u.needed("smaller eval")} == {REFERENCE, "default", "smaller eval"}


def score_rows(plan, count: int, order: dict[str, list[float]]) -> list[dict]:
    """Rows of the choice cell: both references score structure i as i unless ``order`` says
    otherwise; each design as ``order``."""
    table = plan[CHOICE[0]]
    rows = []
    for name, design in table.items():
        scores = order.get(name, list(range(count)))
        for index, score in enumerate(scores):
            for replicate in range(design.seeds):
                rows.append({"task": CHOICE[0], "space": CHOICE[1], "design": name, "index": index,
                             "score": str(score), "seconds": "1"})  # fmt: skip
    return rows


def test_the_choice_is_the_best_ranking_design_and_only_once_the_choice_cell_is_complete():
    plan, count = two_task_plan(), 6
    scrambled = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    losers = [name for name in plan["SST-2"] if name not in ("longer steps", *REFERENCES)]
    rows = score_rows(plan, count, dict.fromkeys(losers, scrambled))
    assert choose(rows, plan, count) == "longer steps"
    incomplete = [r for r in rows if not (r["design"] == "no rescue" and r["index"] == 5)]
    assert choose(incomplete, plan, count) is None
    no_repeat = [r for r in rows if not (r["design"] == REFERENCE_AGAIN and r["index"] == 5)]
    assert choose(no_repeat, plan, count) is None  # the choice waits for both reference seeds


def test_designs_rank_against_both_reference_seeds_and_the_repeat_against_the_first():
    plan, count = two_task_plan(), 6
    # the seeds disagree on structures 4 and 5; their mean orders 0..5 as 0, 1, 2, 3, 4.5, 4.5
    again = [0.0, 1.0, 2.0, 3.0, 5.0, 4.0]
    rows = score_rows(plan, count, {REFERENCE_AGAIN: again, "default": [0.0, 1.0, 2.0, 3.0, 4.5, 4.5]})
    found = agreements(rows, *CHOICE, count, plan[CHOICE[0]])
    assert found["default"].rho == 1.0  # exactly the mean's order
    assert 0.9 < found[REFERENCE_AGAIN].rho < 1.0  # one swap against the first seed
    assert not set(REFERENCES) & {choose(rows, plan, count)}


def test_the_picks_regret_is_what_choosing_by_the_design_costs_on_the_reference():
    # the design's top structure (0.9) is second best on the reference: 0.85 - 0.80
    assert math.isclose(agreement([(0.9, 0.80), (0.5, 0.85), (0.1, 0.70), (0.3, 0.75)]).regret, 0.05)
    tied = agreement([(0.9, 0.80), (0.9, 0.70), (0.1, 0.85), (0.3, 0.75)])
    assert math.isclose(tied.regret, 0.85 - 0.75)  # tied tops count as their mean
    assert math.isnan(agreement([(0.9, 0.80), (0.5, 0.85)]).regret)


def test_the_pooled_table_ranks_both_spaces_structures_together():
    table, count = two_task_plan()["SST-2"], 4
    # within each space the default orders the structures backwards; between spaces it is right
    reference_by_space = {"lora": [0.80, 0.81, 0.82, 0.83], "autopeft": [0.60, 0.61, 0.62, 0.63]}
    default_by_space = {"lora": [0.74, 0.73, 0.72, 0.71], "autopeft": [0.54, 0.53, 0.52, 0.51]}
    rows = [{"task": "SST-2", "space": space, "design": design, "index": index, "score": str(score), "seconds": "1"}
            for design, by_space in ((REFERENCE, reference_by_space), ("default", default_by_space))
            for space, scores in by_space.items() for index, score in enumerate(scores)]
    assert agreements(rows, "SST-2", "autopeft", count, table)["default"].rho == -1.0
    pooled = pooled_agreements(rows, "SST-2", {"lora": count, "autopeft": count}, table)
    assert set(pooled) == {"default"} and pooled["default"].structures == 8
    assert pooled["default"].rho > 0.5


def test_the_report_says_how_far_one_reference_seed_is_from_another(sst2):
    plan, count = two_task_plan(), 4
    rows = score_rows(plan, count, {REFERENCE: [0.80, 0.82, 0.84, 0.86], REFERENCE_AGAIN: [0.81, 0.84, 0.84, 0.80]})
    line = reference_noise(rows, sst2, CHOICE[1], count, plan[CHOICE[0]])
    assert "over the 4 structures with both seeds: dev accuracy spans 0.800 .. 0.860" in line
    assert "the seeds differ by 0.015 (median; largest 0.060)" in line
    assert "dev's binomial standard error at 0.826 is 0.013" in line  # sqrt(0.826 * 0.174 / 872)
    only_first = [row for row in rows if row["design"] != REFERENCE_AGAIN]
    assert reference_noise(only_first, sst2, CHOICE[1], count, plan[CHOICE[0]]) is None


def test_rows_of_an_older_proxy_stand_only_for_structures_it_trained_the_same_way():
    from autopeft.space.structure import LoraModules, Structure
    from autopeft.worker.proxy import REVISION

    runs = list(units({"lora": 2}, two_task_plan()))
    lora, rslora = (Structure(lora=LoraModules({(0, "q"): 32}, variant=v)).to_json() for v in ("lora", "rslora"))
    default = [u for u in runs if u.design == "default" and u.task == "SST-2"]
    rows = [{"key": default[0].key_at(REVISION - 1), "structure": json.dumps(lora)},
            {"key": default[1].key_at(REVISION - 1), "structure": json.dumps(rslora)},  # the latest revision changed rsLoRA
            {"key": default[1].key_at(REVISION), "structure": json.dumps(rslora)}]
    kept = still_current(rows, runs)
    assert sorted(row["key"] for row in kept) == sorted([default[0].key, default[1].key])
    assert [row["key"] for row in kept if row["structure"] == json.dumps(rslora)] == [default[1].key]


def test_the_report_counts_runs_that_score_what_predicting_one_class_scores(sst2):
    from autopeft.tasks.holdout import with_search_split

    task = with_search_split(sst2)
    dev_levels = one_class_scores(task, "dev")
    positives = sum(task.dev.labels) / len(task.dev)
    assert [round(v, 9) for v in dev_levels] == [round(1 - positives, 9), round(positives, 9)]  # always 0, always 1
    search_level = one_class_scores(task, "search")[1]
    plan, count = two_task_plan(), 6
    rows = score_rows(plan, count, {REFERENCE: [dev_levels[0], 0.85, 0.86, 0.87, 0.84, 0.83],
                                    "default": [search_level, search_level, 0.80, 0.81, 0.82, 0.83]})
    rows = [row for row in rows if row["design"] in (REFERENCE, "default")]
    line = one_class_line(rows, task, {CHOICE[1]: count}, plan[CHOICE[0]])
    assert "reference 1 of 6, default 2 of 6" in line
    # off the level, default ranks (0.80 .. 0.83) against the reference's (0.86, 0.87, 0.84, 0.83)
    assert "off that level: default -0.800 over 4." in line
    collapsed = [row for row in rows if row["design"] == REFERENCE or float(row["score"]) == search_level]
    assert "off that level: default - over 0." in one_class_line(collapsed, task, {CHOICE[1]: count}, plan[CHOICE[0]])
    rows = [row for row in rows if float(row["score"]) > 0.8]
    assert one_class_line(rows, task, {CHOICE[1]: count}, plan[CHOICE[0]]) is None
