"""The proxy study's fixed rules: equal-cost designs, a 4x reference on dev, resumable run keys."""

from dataclasses import replace

from bench.proxy_study import REFERENCE, Design, designs, reference, units

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
