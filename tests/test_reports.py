"""Front rows from a real store: replicates pooled into mean/std/n, the proxy warning, validation summaries."""

from __future__ import annotations

import pytest

from autopeft.objectives import Objective
from autopeft.reports import one_class_rows, proxy_warning, reported_front, trial_json, validation_json
from autopeft.store import Store, TrialRole
from autopeft.trials import TrialOutcome, TrialState

OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


def run(store, job_id, rank, accuracy, classes=2.0, **fields):
    """A finished trial of the LoRA structure of ``rank`` (10 * rank parameters) scoring ``accuracy``."""
    trial = store.add_trial(
        job_id, config={"r": rank}, structure={"lora": {"r": rank}}, trainable_params=10 * rank, seed=len(
            store.trials(job_id)), fidelity={"steps": 10}, **fields,
    )  # fmt: skip
    metrics = {"accuracy": accuracy, "predicted_classes": classes}
    return store.record_outcome(TrialOutcome(trial.id, TrialState.COMPLETED, "w", metrics=metrics))


def test_replicates_are_one_front_row_with_their_mean_spread_and_n(store):
    job = store.create_job({}, 8)
    first = run(store, job, 8, 0.80, role=TrialRole.DEFAULT, label="LoRA r8 q,v")
    run(store, job, 8, 0.84, role=TrialRole.REPLICATE, origin_id=first.id)
    run(store, job, 1, 0.70)
    front = reported_front(store.trials(job), OBJECTIVES)
    assert [(t.number, t.n) for t in front] == [(0, 2), (2, 1)]
    row = trial_json(front[0], OBJECTIVES)
    assert row["values"]["accuracy"] == pytest.approx(0.82) and row["n"] == 2
    assert row["std"]["accuracy"] == pytest.approx(0.0283, abs=1e-4) and row["replicate_trials"] == [0, 1]
    assert (row["split"], row["role"], row["label"]) == ("search", "default", "LoRA r8 q,v")
    assert trial_json(front[1], OBJECTIVES)["std"]["accuracy"] is None


def test_validation_runs_never_enter_the_search_front(store):
    job = store.create_job({}, 8)
    searched = run(store, job, 4, 0.7)
    run(store, job, 4, 0.99, role=TrialRole.VALIDATION, origin_id=searched.id, split="dev")
    front = reported_front(store.trials(job), OBJECTIVES)
    assert [(t.number, t.value("accuracy"), t.split) for t in front] == [(0, 0.7, "search")]


def test_warning_when_every_structure_predicts_one_class(store):
    job = store.create_job({}, 8)
    run(store, job, 1, 0.55, classes=1.0)
    assert proxy_warning(store.trials(job), OBJECTIVES) is None  # one structure says nothing yet
    run(store, job, 2, 0.55, classes=1.0)
    assert "every one of 2 structures predicts a single class" in proxy_warning(store.trials(job), OBJECTIVES)
    run(store, job, 4, 0.75)
    assert proxy_warning(store.trials(job), OBJECTIVES).startswith("1 of the 2 Pareto rows (trial 0) had a run that")
    run(store, job, 1, 0.56)  # rank 1 again, two classes this time: the pooled row still had a one-class run
    assert proxy_warning(store.trials(job), OBJECTIVES).startswith("1 of the 2 Pareto rows (trial 0)")


def test_no_warning_when_no_front_row_had_a_one_class_run(store):
    job = store.create_job({}, 8)
    run(store, job, 1, 0.70)
    run(store, job, 2, 0.55, classes=1.0)  # dominated by rank 1
    run(store, job, 4, 0.75)
    front = reported_front(store.trials(job), OBJECTIVES)
    assert [t.number for t in front] == [2, 0] and one_class_rows(front, store.trials(job)) == []
    assert proxy_warning(store.trials(job), OBJECTIVES) is None


def test_warning_when_scores_spread_less_than_the_seed_noise(store):
    job = store.create_job({}, 8)
    first = run(store, job, 8, 0.80)
    run(store, job, 8, 0.86, role=TrialRole.REPLICATE, origin_id=first.id)  # seed sd 0.042
    run(store, job, 1, 0.81)
    warning = proxy_warning(store.trials(job), OBJECTIVES)
    assert warning.startswith("accuracy spans 0.0200 over 2 structures, less than 2x the seed standard deviation 0.0424")
    run(store, job, 2, 0.60)
    assert proxy_warning(store.trials(job), OBJECTIVES) is None


def test_validation_summary_ranks_search_scores_against_dev(store):
    job = store.create_job({}, 8)
    searched = [run(store, job, rank, accuracy) for rank, accuracy in ((1, 0.6), (2, 0.7), (4, 0.8), (8, 0.9))]
    assert validation_json(store.trials(job), OBJECTIVES) is None
    for origin, dev in zip(searched, (0.62, 0.75, 0.71, 0.85)):
        run(store, job, origin.config["r"], dev, role=TrialRole.VALIDATION, origin_id=origin.id, split="dev")
    summary = validation_json(store.trials(job), OBJECTIVES)
    assert summary["spearman"] == pytest.approx(0.8) and summary["kendall"] == pytest.approx(2 / 3)
    assert (summary["search_front_validated"], summary["search_front_still_non_dominated"]) == (4, 3)
    assert [row["trial"] for row in summary["validated_front"]] == [3, 1, 0]
    assert store.job(job).trial_counts == {"completed": 4}  # validation runs are not search trials
