"""Optuna's multi-objective samplers behind the optimizer contract: MOTPE and NSGA-II baselines.

Each optimizer drives an *in-memory* Optuna study through ask/tell (never an RDB storage: Optuna
would create its own ``alembic_version`` table, which collides with the trial store's). The
study's values are the maximised axes of :mod:`autopeft.optimizers.axes` (costs in log10), the
same the MOBO acquisition and the hypervolume see, so that every optimizer ranks trade-offs alike.

Dimensions map to Optuna distributions: Categorical and Flag -> categorical, Choice -> int index
(ordered), Real -> float (log-scaled when the dimension is). Trials are sampled define-by-run: a
conditional dimension (a method's size) is suggested only when its parent's value makes it act,
and MOTPE's ``group=True`` models each set of co-occurring parameters apart, which is how Optuna's
TPE handles conditional spaces natively.

A suggestion that is infeasible, or decodes to a structure already asked, told or pending, is
told to the study as FAIL (both samplers ignore failed trials) and the sampler asked again; after
``max_rejections`` in a row the slot gets a Sobol point instead, enqueued so that the study still
records it as its own trial. Points told but never asked (warm starts, other workers) are added as
finished trials. Pending points from elsewhere only exclude their structures: Optuna models its own
running trials (TPE's constant liar), not foreign ones.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from autopeft.optimizers.axes import to_axis
from autopeft.optimizers.base import Observation, Optimizer
from autopeft.optimizers.random_search import RandomSearch
from autopeft.space import Point
from autopeft.space.dimensions import Categorical, Choice, Dimension, Flag, Real, Value

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module="optuna")

MAX_REJECTIONS = 32


def distribution(dim: Dimension) -> BaseDistribution:
    """The Optuna distribution of one dimension."""
    if isinstance(dim, Categorical):
        return CategoricalDistribution(dim.values)
    if isinstance(dim, Flag):
        return CategoricalDistribution((False, True))
    if isinstance(dim, Choice):
        return IntDistribution(0, len(dim.values) - 1)
    if isinstance(dim, Real):
        return FloatDistribution(dim.low, dim.high, log=dim.log)
    raise TypeError(f"no Optuna distribution for {dim!r}")


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Value:
    """Ask ``trial`` for parameter ``name`` from ``distribution`` through its public suggest API."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


def to_param(dim: Dimension, value: Value) -> Value:
    return dim.values.index(value) if isinstance(dim, Choice) else value


def from_param(dim: Dimension, param: Value) -> Value:
    return dim.values[int(param)] if isinstance(dim, Choice) else param


class OptunaOptimizer(Optimizer):
    """An Optuna sampler on an in-memory study of the space; subclasses choose the sampler."""

    def __init__(self, space, objectives, seed: int = 0, *, max_rejections: int = MAX_REJECTIONS) -> None:
        super().__init__(space, objectives, seed)
        self.max_rejections = max_rejections
        self.distributions = {d.name: distribution(d) for d in space.dimensions}
        self.study = optuna.create_study(
            directions=["maximize"] * len(self.objectives), sampler=self._sampler(seed), storage=None
        )
        self._fallback = RandomSearch(space, objectives, seed)
        self._running: dict[str, int] = {}
        """structure key -> number of the study trial proposing it, until told."""

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def _propose(self, n: int, excluded: set[str]) -> list[Point]:
        points: list[Point] = []
        taken = set(excluded)
        for _ in range(n):
            point = self._suggest(taken)
            if point is None:
                break
            points.append(point)
            taken.add(self.space.structure_key(point))
        return points

    def _suggest(self, excluded: set[str]) -> Point | None:
        for _ in range(self.max_rejections):
            trial = self.study.ask()
            point = self._sample(trial)
            key = self.space.structure_key(point)
            if self.space.is_feasible(point) and key not in excluded:
                self._running[key] = trial.number
                return point
            self.study.tell(trial, state=TrialState.FAIL)
        fallback = self._fallback._propose(1, excluded)
        if not fallback:
            return None
        self.study.enqueue_trial(self._params(fallback[0]))
        trial = self.study.ask()
        self._sample(trial)
        self._running[self.space.structure_key(fallback[0])] = trial.number
        return fallback[0]

    def _sample(self, trial: optuna.Trial) -> Point:
        """The point of ``trial``, define-by-run: a dimension is suggested only when it acts given
        the values suggested before it (a method's size only for that method), so the sampler sees
        the space's conditional structure; inactive dimensions take their first value."""
        point: Point = {}
        for dim in self.space.dimensions:
            if self.space.is_active(dim.name, point):
                point[dim.name] = from_param(dim, suggest(trial, dim.name, self.distributions[dim.name]))
            else:
                point[dim.name] = dim.from_unit(0.0)
        return point

    def _params(self, point: Point) -> dict[str, Value]:
        """The study's parameters of ``point``: its active dimensions only."""
        return {d.name: to_param(d, point[d.name]) for d in self.space.dimensions if self.space.is_active(d.name, point)}

    def _observe(self, observations: Sequence[Observation]) -> None:
        for observation in observations:
            values = None if observation.failed else [to_axis(o, observation.values[o.name]) for o in self.objectives]
            if values is not None and not all(math.isfinite(v) for v in values):
                values = None  # Optuna refuses non-finite objectives; a diverged metric counts as failed
            state = TrialState.FAIL if values is None else TrialState.COMPLETE
            number = self._running.pop(self.space.structure_key(observation.point), None)
            if number is not None:
                self.study.tell(number, values=values, state=state)
            else:
                self.study.add_trial(
                    optuna.trial.create_trial(
                        state=state, values=values, params=(params := self._params(observation.point)),
                        distributions={name: self.distributions[name] for name in params},
                    )  # fmt: skip
                )


class MotpeOptimizer(OptunaOptimizer):
    """Multi-objective TPE (multivariate, grouped by conditional structure, constant liar for running trials)."""

    name = "motpe"

    def __init__(self, space, objectives, seed: int = 0, *, startup_trials: int = 10, **options) -> None:
        self.startup_trials = startup_trials
        super().__init__(space, objectives, seed, **options)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.startup_trials, multivariate=True, group=True, constant_liar=True
        )


class Nsga2Optimizer(OptunaOptimizer):
    """NSGA-II; the population is small by default because searches here last tens of trials."""

    name = "nsga2"

    def __init__(self, space, objectives, seed: int = 0, *, population_size: int = 16, **options) -> None:
        self.population_size = population_size
        super().__init__(space, objectives, seed, **options)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=self.population_size)
