"""What jobs and trials look like as JSON: the contract of ``--json`` output and of the service.

``pareto --json`` (and ``GET /jobs/{id}/pareto``) is a list of :func:`trial_json` objects, each with
at least ``trial`` (the number ``export --trial`` takes), ``values`` (objective name -> value),
``trainable_params`` (int) and ``rung`` (the fidelity it ran at); ``jobs --json`` is a list of
:func:`job_json` objects with at least ``id`` and ``state``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autopeft.objectives import Objective, pareto_front
from autopeft.store import JobRecord, TrialRecord
from autopeft.trials import TrialState


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
    history = [{"rung": r, "trials_done": n, "hypervolume": v} for r, n, v, _ in hypervolumes]
    return {
        **job_json(job),
        "driver": job.driver,
        "driver_heartbeat": job.heartbeat_at.isoformat() if job.heartbeat_at else None,
        "objectives": [o.to_json() for o in objectives],
        "pareto_size": len(front),
        "best": trial_json(front[0], objectives) if front else None,
        "hypervolume": history[-1]["hypervolume"] if history else None,
        "hypervolume_reference": hypervolumes[-1][3] if hypervolumes else None,
        "hypervolume_history": history,
        "failures": [
            {"trial": t.number, "attempt": t.attempt, "error": t.error} for t in trials if t.state == TrialState.FAILED
        ],
    }
