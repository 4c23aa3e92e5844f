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

Tune checkpoints the searcher to a file and restores it from one; the file is JSON, validated on
the way in, so that a checkpoint someone else wrote can at worst be refused, never run code
(pickle would run whatever the file asks for).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, ValidationError
from ray.tune.search import Searcher

from autopeft.errors import AutopeftError
from autopeft.objectives import Objective
from autopeft.optimizers import Observation, make_optimizer
from autopeft.space import Point, SearchSpace

STRUCTURE_KEY = "structure"
PARAMS_KEY = "trainable_params"
CHECKPOINT_FORMAT = "autopeft-tune-searcher/1"

# bool before int before float: a point keeps each value's JSON type (True stays True, 4 stays 4)
_Value = Union[StrictBool, StrictInt, float, str]


class _StoredObservation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    point: dict[str, _Value]
    values: dict[str, float]
    failed: bool
    rung: int


class _Checkpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal[CHECKPOINT_FORMAT]
    observations: list[_StoredObservation]
    running: dict[str, dict[str, _Value]]


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
        state = {
            "format": CHECKPOINT_FORMAT,
            "observations": [
                {"point": o.point, "values": dict(o.values), "failed": o.failed, "rung": o.rung}
                for o in self.optimizer.observations
            ],
            "running": self._running,
        }
        with open(checkpoint_path, "w", encoding="utf-8") as handle:
            json.dump(state, handle)

    def restore(self, checkpoint_path: str) -> None:
        """Load a checkpoint written by :meth:`save`; AutopeftError for anything else."""
        try:
            with open(checkpoint_path, encoding="utf-8") as handle:
                state = _Checkpoint.model_validate_json(handle.read())
        except (OSError, UnicodeDecodeError, ValidationError) as exc:
            raise AutopeftError(f"{checkpoint_path}: not an autopeft searcher checkpoint ({type(exc).__name__})") from exc
        self.optimizer.tell([Observation(**o.model_dump()) for o in state.observations])
        self._running = state.running

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
