"""What jobs and trials look like as JSON: the contract of ``--json`` output and of the service.

``pareto --json`` (and ``GET /jobs/{id}/pareto``) is a list of :func:`trial_json` objects, each with
at least ``trial`` (the number ``export --trial`` takes), ``values`` (objective name -> value; the
mean over the row's ``n`` runs), ``n``, ``std`` (objective name -> sample standard deviation over
the runs, null when n = 1), ``replicate_trials`` (the numbers of those runs), ``split`` (the split
the metrics were scored on: ``search``; ``dev`` for validation runs), ``role`` and ``label``
(``default`` rows carry the practitioner default's name), ``trainable_params`` (int) and ``rung``
(the fidelity it ran at); ``jobs --json`` is a list of :func:`job_json` objects with at least ``id``
and ``state``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from autopeft.objectives import MeasuredTrial, Objective, job_objectives, non_dominated, observed, pareto_front
from autopeft.store import JobRecord, Store, TrialRecord, TrialRole
from autopeft.store.fronts import RungScan, pooled_objectives
from autopeft.trials import TrialState

NOISE_MULTIPLE = 2.0
"""Scores spread less than this many seed standard deviations cannot rank structures."""


def reported_front(
    trials: Sequence[TrialRecord], objectives: Sequence[Objective], rung: int | None = None
) -> list[TrialRecord]:
    """The Pareto set at ``rung``, by default the highest rung that has completed trials.

    Fronts never mix rungs: a longer fine-tune scores differently from a shorter one.
    """
    finished = [t for t in trials if t.state == TrialState.COMPLETED]
    if rung is None:
        rung = max((t.rung for t in finished), default=0)
    return pareto_front([t for t in finished if t.rung == rung], objectives)


def trial_json(trial: TrialRecord, objectives: Sequence[Objective]) -> dict[str, Any]:
    return {
        "trial": trial.number,
        "state": trial.state,
        "rung": trial.rung,
        "attempt": trial.attempt,
        "promoted_from": trial.promoted_from,
        "values": {o.name: trial.value(o.name) for o in objectives},
        "n": trial.n,
        "std": {o.name: (trial.spread or {}).get(o.name) for o in objectives},
        "replicate_trials": list(trial.replicates or (trial.number,)),
        "split": trial.split,
        "role": trial.role,
        "label": trial.label,
        "trainable_params": trial.trainable_params,
        "metrics": trial.values,
        "structure": trial.structure,
        "config": trial.config,
        "fidelity": trial.fidelity,
        "seed": trial.seed,
        "worker": trial.worker,
        "wall_time_s": trial.wall_time_s,
        "step_time_s": trial.step_time_s,
        "peak_memory_bytes": trial.peak_memory_bytes,
        "dispatch_wait_s": trial.dispatch_wait_s,
        "timings": trial.timings,
        "error": trial.error,
    }


def job_json(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "model": job.spec.get("model"),
        "task": job.spec.get("task"),
        "space": job.spec.get("space"),
        "budget_trials": job.budget_trials,
        "trials_done": job.trials_done,
        "trial_counts": job.trial_counts,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
    }


def status_json(
    job: JobRecord,
    trials: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    hypervolumes: Sequence[tuple[int, int, float, dict]] = (),
) -> dict[str, Any]:
    front = reported_front(trials, objectives)
    return _status(
        job, objectives,
        front_size=len(front),
        best=front[0] if front else None,
        warning=proxy_warning(trials, objectives),
        defaults=[t for t in observed(trials, objectives) if t.role == TrialRole.DEFAULT],
        validation=validation_json(trials, objectives),
        failures=[(t.number, t.attempt, t.error) for t in trials if t.state == TrialState.FAILED],
        hypervolumes=hypervolumes,
    )  # fmt: skip


def _status(
    job: JobRecord,
    objectives: Sequence[Objective],
    *,
    front_size: int,
    best: TrialRecord | None,
    warning: str | None,
    defaults: Sequence[TrialRecord],
    validation: dict[str, Any] | None,
    failures: Sequence[tuple[int, int, str | None]],
    hypervolumes: Sequence[tuple[int, int, float, dict]],
) -> dict[str, Any]:
    history = [{"rung": r, "trials_done": n, "hypervolume": v} for r, n, v, _ in hypervolumes]
    return {
        **job_json(job),
        "splits": job.spec.get("task_info", {}).get("splits"),
        "proxy_warning": warning,
        "defaults": [trial_json(t, objectives) for t in defaults],
        "validation": validation,
        "driver": job.driver,
        "driver_heartbeat": job.heartbeat_at.isoformat() if job.heartbeat_at else None,
        "objectives": [o.to_json() for o in objectives],
        "pareto_size": front_size,
        "best": None if best is None else trial_json(best, objectives),
        "hypervolume": history[-1]["hypervolume"] if history else None,
        "hypervolume_reference": hypervolumes[-1][3] if hypervolumes else None,
        "hypervolume_history": history,
        "failures": [{"trial": number, "attempt": attempt, "error": error} for number, attempt, error in failures],
    }


def seed_noise(records: Sequence[TrialRecord], name: str) -> float | None:
    """Pooled seed-to-seed standard deviation of value ``name`` over replicated records, or None."""
    variances = [(r.n - 1, r.spread[name] ** 2) for r in records if r.n > 1 and r.spread and name in r.spread]
    freedom = sum(f for f, _ in variances)
    return math.sqrt(sum(f * v for f, v in variances) / freedom) if freedom else None


def proxy_warning(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> str | None:
    """One line when the proxy cannot tell the job's structures apart, else None.

    That is when at least two structures finished at rung 0 and every one predicts a single class
    (or scores exactly the same), or when their scores span less than ``NOISE_MULTIPLE`` seed
    standard deviations (measured on the confirmation replicates). Short of that, it names the
    Pareto rows with a run that predicted a single class: a constant prediction's score tells
    nothing about the structure, yet a cheap one lands on the front.
    """
    records = [r for r in observed(trials, objectives) if r.rung == 0]
    metric = objectives[0].name
    scores = [r.value(metric) for r in records]
    return _proxy_line(
        len(records), metric, lambda: all(map(predicts_one_class, records)),
        max(scores, default=None), min(scores, default=None), lambda: scores[0], lambda _: seed_noise(records, metric),
        lambda: one_class_front_line(reported_front(trials, objectives), trials),
    )  # fmt: skip


def predicts_one_class(record: MeasuredTrial) -> bool:
    """Whether the record's proxy predicted a single class on the scored split (for a pooled
    record: every one of its runs did)."""
    return record.values.get("predicted_classes") == 1.0


def one_class_rows(front: Sequence[MeasuredTrial], runs: Sequence[MeasuredTrial]) -> list[int]:
    """Numbers of the front rows of which a run among ``runs`` predicted a single class."""
    collapsed = {run.number for run in runs if predicts_one_class(run)}
    return [row.number for row in front if collapsed.intersection(row.replicates or (row.number,))]


def one_class_front_line(front: Sequence[MeasuredTrial], runs: Sequence[MeasuredTrial]) -> str | None:
    """The warning for front rows of which a run predicted a single class (:func:`one_class_rows`)."""
    rows = one_class_rows(front, runs)
    if not rows:
        return None
    named = f"{'trial' if len(rows) == 1 else 'trials'} {', '.join(map(str, rows))}"
    return (
        f"{len(rows)} of the {len(front)} Pareto rows ({named}) had a run that predicted a single class on the "
        "search split: their scores may be a constant prediction's, not the structure's; raise --steps and "
        "--train-examples, or check them with `autopeft validate`"
    )


def _proxy_line(
    count: int, metric: str, one_class: Callable[[], bool], high: float | None, low: float | None,
    first: Callable[[], float], noise: Callable[[float], float | None], front_line: Callable[[], str | None],
) -> str | None:
    """:func:`proxy_warning` from what it reads of the observations at rung 0: how many, whether
    each predicts one class, the highest and lowest score, the first one's, and the pooled seed
    noise (given the scores' spread); then the front's one-class line."""
    if count < 2:
        return None
    advice = "the proxy is too small to rank structures; raise --steps and --train-examples"
    if one_class():
        return f"every one of {count} structures predicts a single class on the search split: {advice}"
    spread = high - low
    if spread == 0:
        return f"all {count} structures score {metric} {first():.4f} on the search split: {advice}"
    seed_sd = noise(spread)
    if seed_sd is not None and spread < NOISE_MULTIPLE * seed_sd:
        return (
            f"{metric} spans {spread:.4f} over {count} structures, less than {NOISE_MULTIPLE:g}x "
            f"the seed standard deviation {seed_sd:.4f}: {advice}"
        )
    return front_line()


def validation_json(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> dict[str, Any] | None:
    """How the search's scores held up when retrained at a higher fidelity and scored on dev.

    Pairs each validated structure's search score (the mean of its search runs) with its latest
    validation score, and reports the rank correlations (Spearman, Kendall; null below 3 pairs),
    how many members of the search front stay non-dominated among the validated structures, and
    the validated front. None before any validation finished.
    """
    from scipy.stats import kendalltau, spearmanr  # only status of a validated job pays for scipy.stats

    metric = objectives[0].name
    latest: dict[int, TrialRecord] = {}
    for trial in trials:
        if trial.role == TrialRole.VALIDATION and trial.state == TrialState.COMPLETED and trial.value(metric) is not None:
            latest[trial.origin_id] = trial
    searched = {r.id: r for r in observed(trials, objectives)}
    pairs = [(searched[origin], run) for origin, run in latest.items() if origin in searched]
    if not pairs:
        return None
    front_ids = {r.id for r in non_dominated(list(searched.values()), objectives)}
    validated_front = non_dominated([run for _, run in pairs], objectives)
    validated_ids = {run.origin_id for run in validated_front}
    search_scores = [origin.value(metric) for origin, _ in pairs]
    dev_scores = [run.value(metric) for _, run in pairs]
    enough = len(pairs) >= 3 and len(set(search_scores)) > 1 and len(set(dev_scores)) > 1
    on_front = [origin.id for origin, _ in pairs if origin.id in front_ids]
    return {
        "metric": metric,
        "split": "dev",
        "pairs": [
            {"trial": origin.number, "validation_trial": run.number, "search": origin.value(metric), "n": origin.n,
             "dev": run.value(metric), "trainable_params": run.trainable_params, "fidelity": run.fidelity}
            for origin, run in pairs
        ],
        "spearman": float(spearmanr(search_scores, dev_scores).statistic) if enough else None,
        "kendall": float(kendalltau(search_scores, dev_scores).statistic) if enough else None,
        "search_front_validated": len(on_front),
        "search_front_still_non_dominated": sum(i in validated_ids for i in on_front),
        "validated_front": [
            {"trial": searched[run.origin_id].number, "validation_trial": run.number, "dev": run.value(metric),
             "trainable_params": run.trainable_params}
            for run in validated_front
        ],
    }


# ------------------------------------------------------------------ the same views, from a store
# At 100k trials, loading every trial to build these takes a minute. The functions below ask the
# store for the few trials each view depends on (autopeft.store.fronts) and build the views with
# the functions above, so they return what those return on every trial of the job.


def stored_front(store: Store, job: JobRecord, rung: int | None = None) -> list[TrialRecord]:
    """:func:`reported_front` of the job's trials."""
    return reported_front(stored_front_runs(store, job, rung), job_objectives(job))


def stored_front_runs(store: Store, job: JobRecord, rung: int | None = None) -> list[TrialRecord]:
    """The runs that make the job's front at ``rung`` (default: the highest with results), all of
    that rung: :func:`reported_front` of them is the front, :func:`one_class_rows` reads them."""
    rung = store.top_rung(job.id) if rung is None else rung
    return store.front_candidates(job.id, job_objectives(job), rung)


def stored_defaults(store: Store, job: JobRecord) -> list[TrialRecord]:
    """The job's observed practitioner defaults (pooled), as :func:`status_json` lists them."""
    objectives = job_objectives(job)
    defaults = store.trials_of_role(job.id, TrialRole.DEFAULT)
    return [t for t in observed(store.groups_of(job.id, [t.id for t in defaults]), objectives) if t.role == TrialRole.DEFAULT]


def stored_status(store: Store, job: JobRecord, *, history: bool = True) -> dict[str, Any]:
    """:func:`status_json` of the job's trials; without ``history``, ``hypervolume_history`` holds
    only the latest entry (what the status panel shows)."""
    objectives = job_objectives(job)
    hypervolumes = store.hypervolumes(job.id, last=not history)
    first_rung = store.scan(job.id, objectives, 0)
    if first_rung is None:  # not a job the store can scan: every trial, as before
        return status_json(job, store.trials(job.id), objectives, hypervolumes)
    front, runs = _front_rows(store, job, objectives, first_rung)
    return _status(
        job, objectives,
        front_size=len(front),
        best=front[0] if front else None,
        warning=_stored_proxy_warning(store, job, objectives, first_rung, (front, runs)),
        defaults=stored_defaults(store, job),
        validation=_stored_validation(store, job, objectives),
        failures=store.failures(job.id),
        hypervolumes=hypervolumes,
    )  # fmt: skip


def stored_proxy_warning(store: Store, job: JobRecord) -> str | None:
    """:func:`proxy_warning` of the job's trials."""
    objectives = job_objectives(job)
    first_rung = store.scan(job.id, objectives, 0)
    if first_rung is None:
        return proxy_warning(store.trials(job.id), objectives)
    return _stored_proxy_warning(store, job, objectives, first_rung, _front_rows(store, job, objectives, first_rung))


def _front_rows(
    store: Store, job: JobRecord, objectives: Sequence[Objective], first_rung: RungScan
) -> tuple[list[TrialRecord], list[TrialRecord]]:
    """:func:`reported_front` at the job's top rung, found from light records, and the runs of its
    rows; only the runs of the front are loaded whole."""
    light, runs_of = store.light_front(job.id, objectives, store.top_rung(job.id), first_rung)
    light = non_dominated(light, objectives)  # the order reported_front gives: by first trial, then best first
    runs = runs_of(light)
    pooled = {row.number: row for row in observed(runs, objectives)}
    return [pooled[row.number] for row in light], runs


def _stored_proxy_warning(
    store: Store, job: JobRecord, objectives: Sequence[Objective], scan: RungScan,
    front: tuple[Sequence[TrialRecord], Sequence[TrialRecord]],
) -> str | None:
    """The scan's count and range of the trials without a twin, and the twinned ones pooled; then
    the ``front`` (its rows and their runs, :func:`_front_rows`)."""
    metric = objectives[0].name
    groups = [(runs, point) for runs in scan.twin_groups() if (point := pooled_objectives(runs, *objectives))]
    scores = [s for s in (scan.high, scan.low, *(value for _, (value, _) in groups)) if s is not None]

    def one_class() -> bool:  # the trials without a twin first: one row usually answers
        if scan.singles and not store.singles_predict_one_class(job.id, objectives, scan):
            return False
        digests = {(t.rung, t.structure["digest"]) for t in scan.twinned}
        runs = store.measurements(job.id, digests, extra=["predicted_classes"])
        return all(map(predicts_one_class, observed(runs, objectives)))

    def noise(spread: float) -> float | None:
        """seed_noise of the pooled records, computed exactly (with Fractions, as statistics.stdev
        does) only when a float estimate cannot tell whether the scores span enough."""
        estimate = _float_seed_noise([[run.values[metric] for run in runs] for runs, _ in groups if len(runs) > 1])
        if estimate is None or spread >= NOISE_MULTIPLE * estimate * (1 + 1e-6):
            return estimate
        return seed_noise(observed(scan.twinned, objectives), metric)

    return _proxy_line(
        scan.singles + len(groups), metric, one_class, max(scores, default=None), min(scores, default=None),
        lambda: max(scores), noise, lambda: one_class_front_line(*front),
    )  # fmt: skip


def _float_seed_noise(runs: Sequence[Sequence[float]]) -> float | None:
    """:func:`seed_noise` of these replicate groups in plain floats (exact to about 1e-15)."""
    freedom = sum(len(values) - 1 for values in runs)
    if not freedom:
        return None
    squares = []
    for values in runs:
        mean = math.fsum(values) / len(values)
        squares.append(math.fsum((value - mean) ** 2 for value in values))
    return math.sqrt(math.fsum(squares) / freedom)


def _stored_validation(store: Store, job: JobRecord, objectives: Sequence[Objective]) -> dict[str, Any] | None:
    """:func:`validation_json` of the validation runs, the structures they validate and the
    candidates of the front over every rung: the only trials it reads."""
    if not store.has_trials(job.id, TrialRole.VALIDATION):
        return None
    runs = store.trials_of_role(job.id, TrialRole.VALIDATION)
    origins = store.groups_of(job.id, [r.origin_id for r in runs if r.origin_id is not None])
    front = store.front_candidates(job.id, objectives, None)
    trials = {t.id: t for t in (*runs, *origins, *front)}
    return validation_json(sorted(trials.values(), key=lambda t: t.number), objectives)
