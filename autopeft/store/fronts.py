"""What a Pareto front and a proxy warning need of a large job, from one pass over one index.

A job's front is botorch's non-dominated sort (:mod:`autopeft.objectives`) of its observations:
completed search trials, one per structure and rung, replicates pooled into their mean. Loading
every trial of a 100k-trial job to sort them takes a minute. :func:`scan_rung` instead reads the
two objectives of the rung's trials from one index, and
:meth:`autopeft.store.Store.front_candidates` loads only the trials on the front, so that the
unchanged code computes the same front from them.

The trials of a rung split in two by ``Trial.twinned`` (another search trial of the rung has the
same structure):

- **Trials without a twin** are observations of their own. SQL keeps only their staircase on
  the two objectives: a trial is kept if its metric is the best of its cost and strictly better
  than the best metric at every better cost. Each trial dropped is dominated by another such
  trial, itself an observation, so it is not on the front (a pre-filter, exact).
- **Twinned trials** are few (replicates, mostly) and come back whole, as light
  :class:`~autopeft.store.store.Measurement` records, pooled here as
  :func:`autopeft.objectives.pooled` pools them.

botorch's non-dominated sort (:func:`autopeft.objectives.non_dominated`) of the kept trials and
the pooled structures then gives the front: a dominated observation is dominated by some front
member (dominance is transitive), and every front member is kept.

The rules apply to a job with two objectives, its task metric (``Trial.metric_value``) and a
cost column; for any other job, or a store with trials that lack a digest, :func:`scan_rung`
returns None and callers load every trial.
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Float, Integer, String, cast, func, literal, null, or_, select, tuple_, union_all
from sqlalchemy.orm import Session

from autopeft.store.models import Trial
from autopeft.trials import TrialRole, TrialState

if TYPE_CHECKING:
    from autopeft.objectives import Objective
    from autopeft.store.store import Measurement


class _Objective(Protocol):
    name: str
    goal: str


@dataclass(frozen=True)
class RungScan:
    """One pass over the completed search trials of a rung (of every rung when ``rung`` is None)."""

    rung: int | None
    singles: int
    """Observations among the trials without a twin (every objective measured)."""
    high: float | None
    low: float | None
    """Their highest and lowest metric."""
    candidates: tuple[Measurement, ...]
    """Those of them that no other one dominates, with their two objectives."""
    twinned: tuple[Measurement, ...]
    """The rung's twinned trials, by number, with their two objectives."""

    def twin_groups(self) -> list[list[Measurement]]:
        """The twinned trials by structure and rung, in the order of their first trial."""
        groups: dict[tuple[int, str], list[Measurement]] = {}
        for twin in self.twinned:
            groups.setdefault((twin.rung, twin.structure["digest"]), []).append(twin)
        return list(groups.values())

    def front(self, objectives: tuple[Objective, Objective]) -> list[Measurement]:
        """The front of the rung, light: candidates and twinned structures' pooled observations
        (each pooled record is its first run's, whose structure names the group)."""
        from autopeft.objectives import non_dominated

        metric, cost = objectives
        dominated = _Staircase([(_up(metric, c.value(metric.name)), _up(cost, c.value(cost.name))) for c in self.candidates])
        pooled = []
        for runs in self.twin_groups():
            point = pooled_objectives(runs, metric, cost)
            if point is not None and not dominated((_up(metric, point[0]), _up(cost, point[1]))):
                pooled.append(replace(runs[0], values={metric.name: point[0]}, **{cost.name: point[1]}))
        return non_dominated([*self.candidates, *pooled], objectives)


class _Staircase:
    """Whether any of some points (maximisation form: metric, cost) dominates a given point."""

    def __init__(self, points: list[tuple[float, float]]) -> None:
        ordered = sorted(points, key=lambda p: -p[1])  # best cost first
        self.costs = [-c for _, c in ordered]  # ascending, for bisect
        self.best: list[float] = []  # the best metric among the first k points
        for value, _ in ordered:
            self.best.append(max(value, self.best[-1]) if self.best else value)

    def __call__(self, point: tuple[float, float]) -> bool:
        value, price = point
        at_least = bisect.bisect_right(self.costs, -price)  # points whose cost is as good or better
        better = bisect.bisect_left(self.costs, -price)  # points whose cost is strictly better
        return (better > 0 and self.best[better - 1] >= value) or (at_least > 0 and self.best[at_least - 1] > value)


def _up(objective: _Objective, value: float) -> float:
    """The value in maximisation form."""
    return value if objective.goal == "max" else -value


def pooled_objectives(runs: list[Measurement], metric: _Objective, cost: _Objective) -> tuple[float, Any] | None:
    """The two objectives of the observation :func:`autopeft.objectives.pooled` makes of one
    structure's runs (the mean metric; the first run's parameter count, the mean of another cost),
    or None when it is not an observation (a run lacks the metric, or every run the cost)."""
    if len(runs) == 1:
        value, spent = runs[0].values.get(metric.name), getattr(runs[0], cost.name)
    else:
        values = [run.values.get(metric.name) for run in runs]
        if None in values:
            return None
        value = statistics.fmean(values)
        if cost.name == "trainable_params":
            spent = runs[0].trainable_params
        else:
            measured = [getattr(run, cost.name) for run in runs if getattr(run, cost.name) is not None]
            spent = statistics.fmean(measured) if measured else None
            if cost.name == "peak_memory_bytes" and spent is not None:
                spent = round(spent)
    return None if value is None or spent is None else (value, spent)


def scan_rung(session: Session, job_id: int, metric: _Objective, cost: _Objective, rung: int | None) -> RungScan | None:
    """The staircase of the trials without a twin, their count and range, and the twinned trials,
    in one statement; None when the rung has a trial without a digest or a NaN among the values."""
    from autopeft.store.store import Measurement

    score, price = Trial.metric_value, getattr(Trial, cost.name)
    searched = [Trial.job_id == job_id, Trial.state == TrialState.COMPLETED, Trial.role != TrialRole.VALIDATION]
    if rung is not None:
        searched.append(Trial.rung == rung)
    alone = [*searched, Trial.twinned.is_(False), score.is_not(None), price.is_not(None)]
    best = func.max if metric.goal == "max" else func.min
    buckets = (
        select(price.label("price"), func.count().label("n"), best(score).label("best"),
               func.max(score).label("high"), func.min(score).label("low"))
        .where(*alone)
        .group_by(price)
        .cte("buckets")
    )  # fmt: skip
    order = buckets.c.price.asc() if cost.goal == "min" else buckets.c.price.desc()
    ranked = select(
        buckets.c.price, buckets.c.best, best(buckets.c.best).over(order_by=order, rows=(None, -1)).label("before")
    ).subquery()
    better = ranked.c.best > ranked.c.before if metric.goal == "max" else ranked.c.best < ranked.c.before
    stairs = select(ranked.c.price, ranked.c.best).where(or_(ranked.c.before.is_(None), better))

    def row(kind: str, **columns: Any) -> list[Any]:
        """One layout for the three parts of the union: a kind, then typed columns or nulls."""
        layout = {"id": Integer, "number": Integer, "rung": Integer, "role": String, "digest": String,
                  "params": Float, "price": Float, "a": Float, "b": Float, "n": Integer}  # fmt: skip
        return [literal(kind, String).label("kind")] + [
            cast(columns[name] if name in columns else null(), kind_of).label(name) for name, kind_of in layout.items()
        ]

    trial = dict(id=Trial.id, number=Trial.number, rung=Trial.rung, role=Trial.role, digest=Trial.structure_digest,
                 params=Trial.trainable_params, price=price, a=score)  # fmt: skip
    statement = union_all(
        select(*row("totals", a=func.max(buckets.c.high), b=func.min(buckets.c.low), price=func.max(buckets.c.price),
                    n=func.coalesce(func.sum(buckets.c.n), 0))),
        select(*row("single", **trial)).where(*alone, tuple_(price, score).in_(stairs)),
        select(*row("twin", **trial)).where(*searched, Trial.twinned.is_(True)),
        select(*row("undigested", id=Trial.id)).where(  # by ix_trials_job_digest, without a pass
            Trial.job_id == job_id, *([] if rung is None else [Trial.rung == rung]), Trial.structure_digest.is_(None)
        ),
    )  # fmt: skip
    candidates, twins, singles, high, low, top_price = [], [], 0, None, None, None
    for kind, trial_id, number, rung_of, role, digest, params, cost_of, a, b, n in session.execute(statement):
        if kind == "totals":
            singles, high, low, top_price = int(n), a, b, cost_of
            continue
        if kind == "undigested":
            return None  # written by a version of autopeft from before the digest
        costs: dict[str, Any] = {"step_time_s": None, "wall_time_s": None, "peak_memory_bytes": None}
        if cost.name != "trainable_params":
            costs[cost.name] = None if cost_of is None else int(cost_of) if cost.name == "peak_memory_bytes" else cost_of
        record = Measurement(
            id=trial_id, number=number, state=TrialState.COMPLETED, role=role, rung=rung_of,
            structure={"digest": digest}, values={} if a is None else {metric.name: a}, trainable_params=int(params),
            **costs,
        )  # fmt: skip
        (candidates if kind == "single" else twins).append(record)
    measured = [high, low, top_price, *(x for t in twins for x in (t.values.get(metric.name), t.value(cost.name)))]
    if any(x is not None and math.isnan(x) for x in measured):
        return None  # NaN sorts above every number in PostgreSQL but breaks the rules above
    by_number = sorted(candidates, key=lambda t: t.number), sorted(twins, key=lambda t: t.number)
    return RungScan(rung, singles, high, low, *map(tuple, by_number))
