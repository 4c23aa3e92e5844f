"""An autopeft search inside a user's own Ray Tune workflow.

:class:`AutopeftSearcher` is a Tune ``Searcher`` backed by any autopeft optimizer (MOBO by
default) over an autopeft :class:`SearchSpace`::

    searcher = AutopeftSearcher(space, objectives, optimizer="mobo")
    tuner = Tuner(train_fn, tune_config=TuneConfig(search_alg=searcher, num_samples=32))

Each suggested config holds the point's dimensions (flat, so Tune lists them as columns), the
decoded ``structure`` (JSON, for :func:`autopeft.apply` or a worker) and its exact
``trainable_params``. The trainable reports the task metric(s) with ``tune.report``; objectives
the space computes (trainable parameters) are filled in by the searcher, so Tune's single-metric
view and autopeft's multi-objective view coexist: ``metric``/``mode`` only tell Tune which column
to sort by.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from ray.tune.search import Searcher

from autopeft.objectives import Objective
from autopeft.optimizers import Observation, make_optimizer
from autopeft.space import Point, SearchSpace

STRUCTURE_KEY = "structure"
PARAMS_KEY = "trainable_params"


class AutopeftSearcher(Searcher):
    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        *,
        optimizer: str = "mobo",
        seed: int = 0,
    ) -> None:
        first = objectives[0]
        super().__init__(metric=first.name, mode=first.goal)
        self.space = space
        self.objectives = list(objectives)
        self.optimizer = make_optimizer(optimizer, space, self.objectives, seed)
        self._running: dict[str, Point] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        points = self.optimizer.ask(1, pending=list(self._running.values()))
        if not points:
            return Searcher.FINISHED
        point = points[0]
        self._running[trial_id] = point
        return {
            **point,
            STRUCTURE_KEY: self.space.decode(point).to_json(),
            PARAMS_KEY: self.space.trainable_params(point),
        }

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        point = self._running.pop(trial_id, None)
        if point is None:
            return
        values = self._values(point, result)
        if error or values is None:
            self.optimizer.tell([Observation(point, failed=True)])
        else:
            self.optimizer.tell([Observation(point, values)])

    def save(self, checkpoint_path: str) -> None:
        """Tune checkpoints the searcher: keep every observation and the trials still running."""
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"observations": self.optimizer.observations, "running": self._running}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        self.optimizer.tell(state["observations"])
        self._running = state["running"]

    def _values(self, point: Point, result: dict | None) -> dict[str, float] | None:
        """Objective values from a Tune result; None when a learned objective is missing."""
        values = {}
        for objective in self.objectives:
            if objective.name == PARAMS_KEY:
                values[objective.name] = float(self.space.trainable_params(point))
            elif result is not None and objective.name in result:
                values[objective.name] = float(result[objective.name])
            else:
                return None
        return values
