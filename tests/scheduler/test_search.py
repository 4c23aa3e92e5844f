"""Real searches through the scheduler: promotion across rungs, hypervolume history, warm start."""

from __future__ import annotations

import json

import pytest

from autopeft.errors import AutopeftError
from autopeft.objectives import job_objectives
from autopeft.reports import reported_front, status_json
from autopeft.scheduler import prepare, run_search
from autopeft.store import JobState, Store
from autopeft.trials import TrialState
from tests.scheduler.conftest import tiny_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def promoted_job(tmp_path_factory):
    store = Store(str(tmp_path_factory.mktemp("promotion") / "store.db"))
    job_id = run_search(prepare(tiny_spec(trials=12, rungs=2, eta=3.0)), store)
    return store, job_id


def test_promotion_reruns_the_best_third_at_three_times_the_steps(promoted_job):
    store, job_id = promoted_job
    trials = store.trials(job_id)
    assert store.job(job_id).state == JobState.COMPLETED
    rung1 = [t for t in trials if t.rung == 1]
    assert rung1, "nothing was promoted"
    assert all(t.state == TrialState.COMPLETED for t in trials), "a trial was left unrun"
    for trial in rung1:
        parent = next(t for t in trials if t.id == trial.promoted_from)
        assert parent.rung == 0 and parent.config == trial.config
        assert trial.fidelity["steps"] == 3 * parent.fidelity["steps"]
    spent = sum(3 ** t.rung for t in trials if t.state in (TrialState.COMPLETED, TrialState.FAILED))
    assert spent <= 12


def test_reported_front_is_per_rung_and_marks_the_fidelity(promoted_job):
    store, job_id = promoted_job
    objectives = job_objectives(store.job(job_id))
    trials = store.trials(job_id)
    top = reported_front(trials, objectives)
    assert top and {t.rung for t in top} == {1}
    assert {t.rung for t in reported_front(trials, objectives, rung=0)} == {0}


def test_hypervolume_history_is_stored_with_its_reference_point(promoted_job):
    store, job_id = promoted_job
    history = store.hypervolumes(job_id)
    assert history and all(value >= 0 for _, _, value, _ in history)
    references = {json.dumps(reference, sort_keys=True) for _, _, _, reference in history}
    assert len(references) == 1 and set(json.loads(references.pop())) == {"accuracy", "trainable_params"}
    summary = status_json(store.job(job_id), store.trials(job_id), job_objectives(store.job(job_id)), history)
    assert summary["hypervolume"] == history[-1][2]


def test_defaults_run_first_and_front_members_are_rerun_with_new_seeds(promoted_job):
    store, job_id = promoted_job
    trials = store.trials(job_id)
    assert [(t.role, t.label) for t in trials[:2]] == [("default", "LoRA r8 q,v"), ("default", "LoRA r8 all-linear")]
    assert {t.split for t in trials} == {"search"}
    replicates = [t for t in trials if t.role == "replicate"]
    assert replicates, "no front member was confirmed"
    for replicate in replicates:
        origin = next(t for t in trials if t.id == replicate.origin_id)
        assert (origin.structure, origin.rung, origin.fidelity) == (replicate.structure, replicate.rung, replicate.fidelity)
        assert origin.seed != replicate.seed
    objectives = job_objectives(store.job(job_id))
    for replicate in replicates:  # an origin and its replicate report as one row: their mean, sd and n
        origin = next(t for t in trials if t.id == replicate.origin_id)
        [pooled] = reported_front([origin, replicate], objectives)
        assert pooled.n == 2 and pooled.spread["accuracy"] is not None
    # Later trials may dominate a confirmed structure; any that stays on the final front keeps n = 2.
    replicated = [replicate.structure for replicate in replicates]
    rows = reported_front(trials, objectives, rung=replicates[0].rung)
    assert all(row.n == 2 for row in rows if row.structure in replicated)
    assert sum(3 ** t.rung for t in trials) <= 12  # confirmation is paid from the budget


def test_warm_start_seeds_the_optimizer_and_never_repeats_a_seen_structure(promoted_job):
    store, job_id = promoted_job
    warm = run_search(prepare(tiny_spec(trials=2, warm_start=job_id)), store)
    seen = {json.dumps(t.structure, sort_keys=True) for t in store.trials(job_id)}
    new = [json.dumps(t.structure, sort_keys=True) for t in store.trials(warm)]
    assert len(new) == 2 and not seen & set(new)
    with pytest.raises(AutopeftError, match="searched a different space"):
        run_search(prepare(tiny_spec(trials=1, warm_start=job_id, space="autopeft")), store)
