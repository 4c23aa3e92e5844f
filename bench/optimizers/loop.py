"""The benchmark loop every optimizer runs through: an initial batch, then batches of ``q``.

Each batch is asked for, evaluated (by a lookup table or a test function) and told back before
the next is asked, as a scheduler with ``q`` workers that finish together would. After every
evaluation the hypervolume of everything observed so far is recorded against one fixed reference
point, so curves of different optimizers are comparable evaluation by evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning

from autopeft.optimizers import Observation, Optimizer
from autopeft.space import Point


@dataclass
class Run:
    """One optimizer run: hypervolume after each evaluation and seconds spent in ``ask``."""

    hypervolumes: list[float] = field(default_factory=list)
    ask_seconds: list[float] = field(default_factory=list)

    def at(self, evaluations: int) -> float:
        """Hypervolume after ``evaluations`` evaluations (the last value if the run was shorter)."""
        return self.hypervolumes[min(evaluations, len(self.hypervolumes)) - 1]


def dominated_volume(rows: Sequence[Sequence[float]], reference: torch.Tensor) -> float:
    """Hypervolume of maximised ``rows`` ((n, m) values) above ``reference`` ((m,))."""
    if not rows:
        return 0.0
    values = torch.tensor(rows, dtype=torch.double)
    return float(DominatedPartitioning(ref_point=reference, Y=values).compute_hypervolume())


def run_optimizer(
    optimizer: Optimizer,
    evaluate: Callable[[Point], Mapping[str, float] | None],
    axes: Callable[[Mapping[str, float]], Sequence[float]],
    reference: torch.Tensor,
    budget: int,
    initial: int,
    q: int,
) -> Run:
    """Run ``optimizer`` for ``budget`` evaluations.

    Args:
        evaluate: objective values of a point, or None when the evaluation failed.
        axes: the maximised coordinates of a value mapping, for the hypervolume.
        reference: (m,) reference point on those axes.
        initial: size of the first batch; later batches have ``q`` points.
    """
    run, rows = Run(), []
    while len(run.hypervolumes) < budget:
        size = min(initial if not run.hypervolumes else q, budget - len(run.hypervolumes))
        started = time.perf_counter()
        points = optimizer.ask(size)
        run.ask_seconds.append(time.perf_counter() - started)
        if not points:
            break
        observations = []
        for point in points:
            values = evaluate(point)
            observations.append(Observation(point, values or {}, failed=values is None))
            if values is not None:
                rows.append(list(axes(values)))
            run.hypervolumes.append(dominated_volume(rows, reference))
        optimizer.tell(observations)
    return run
