"""The proxy study's fixed rules: equal-cost designs, a 4x reference on dev, resumable run keys,
a design chosen on one cell only and the verdict cells training only what the verdict needs."""

from dataclasses import replace

from bench.proxy_study import CHOICE, REFERENCE, Design, choose, designs, owned, reference, units
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
    table = {REFERENCE: Design(reference(64, 60_000))} | designs(64, SEARCH_SIZE)
    return {"SST-2": table, "MRPC": table}


def test_shards_split_whole_structures_and_verdict_cells_wait_for_the_choice():
    runs = list(units({"lora": 3, "autopeft": 2}, two_task_plan()))
    halves = [owned(runs, Shard(i, 2)) for i in range(2)]
    assert sorted(map(id, halves[0] + halves[1])) == sorted(map(id, runs))
    assert not {u.structure for u in halves[0]} & {u.structure for u in halves[1]}
    choice_cell = [u for u in runs if (u.task, u.space) == CHOICE]
    verdict = [u for u in runs if (u.task, u.space) != CHOICE]
    assert all(u.needed(None) for u in choice_cell)
    assert {u.design for u in verdict if u.needed(None)} == {REFERENCE, "default"}
    assert {u.design for u in verdict if u.needed("smaller eval")} == {REFERENCE, "default", "smaller eval"}


def score_rows(plan, count: int, order: dict[str, list[float]]) -> list[dict]:
    """Rows of the choice cell: the reference scores structure i as i; each design as ``order``."""
    table = plan[CHOICE[0]]
    rows = []
    for name, design in table.items():
        scores = list(range(count)) if name == REFERENCE else order.get(name, list(range(count)))
        for index, score in enumerate(scores):
            for replicate in range(design.seeds):
                rows.append({"task": CHOICE[0], "space": CHOICE[1], "design": name, "index": index,
                             "score": str(score), "seconds": "1"})  # fmt: skip
    return rows


def test_the_choice_is_the_best_ranking_design_and_only_once_the_choice_cell_is_complete():
    plan, count = two_task_plan(), 6
    scrambled = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    rows = score_rows(plan, count, {name: scrambled for name in plan["SST-2"] if name != "longer steps"})
    assert choose(rows, plan, count) == "longer steps"
    incomplete = [r for r in rows if not (r["design"] == "no rescue" and r["index"] == 5)]
    assert choose(incomplete, plan, count) is None
