"""The contract every optimizer must pass. Subclass :class:`OptimizerContract` and set ``optimizer_class``.

The contract runs on a LoRA space bound to a tiny BERT, with a synthetic objective (so that it
runs in seconds): maximise a score that rewards rank in the top layers, minimise trainable
parameters (computed exactly by the space).
"""

from __future__ import annotations

import pytest

from autopeft.objectives import Objective
from autopeft.optimizers import Observation, Optimizer
from autopeft.space import parse_space
from autopeft.space.schema import load_space_spec
from autopeft.space.search_space import bind_space
from tests.space.tiny_models import tiny_bert

SPACE = """
name: contract
modules:
  lora:
    roles: [q, v, down]
    search_roles: true
    rank: {choices: [0, 2, 4, 8], per: layer}
    variants: [lora, dora]
"""

TINY_SPACE = """
name: tiny
modules:
  lora:
    roles: [q]
    rank: {choices: [0, 2, 4], per: global}
"""

OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]


def synthetic_values(space, point) -> dict[str, float]:
    structure = space.decode(point)
    ranks = structure.lora.ranks if structure.lora else {}
    score = 0.5 + sum(0.01 * layer * r for (layer, _), r in ranks.items()) / (1 + len(ranks))
    return {"accuracy": score, "trainable_params": float(space.trainable_params(point))}


class OptimizerContract:
    optimizer_class: type[Optimizer]

    @pytest.fixture(scope="class")
    def space(self):
        return bind_space(parse_space(SPACE), tiny_bert())

    def make(self, space, seed: int = 0) -> Optimizer:
        return self.optimizer_class(space, OBJECTIVES, seed=seed)

    def observe(self, optimizer: Optimizer, points) -> None:
        optimizer.tell([Observation(p, synthetic_values(optimizer.space, p)) for p in points])

    def test_ask_returns_n_feasible_points_of_the_space(self, space):
        points = self.make(space).ask(4)
        assert len(points) == 4
        for point in points:
            space.check_point(point)
            assert space.is_feasible(point)

    def test_ask_zero_returns_nothing(self, space):
        assert self.make(space).ask(0) == []

    def test_no_duplicate_within_a_batch_pending_or_history(self, space):
        optimizer = self.make(space)
        first = optimizer.ask(3)
        pending = optimizer.ask(3)
        self.observe(optimizer, first)
        later = optimizer.ask(6, pending=pending)
        keys = [space.structure_key(p) for p in first + pending + later]
        assert len(keys) == len(set(keys)) == 12

    def test_pending_points_from_elsewhere_are_avoided(self, space):
        pending = self.make(space, seed=99).ask(5)
        points = self.make(space).ask(5, pending=pending)
        assert not {space.structure_key(p) for p in points} & {space.structure_key(p) for p in pending}

    def test_failed_points_are_never_proposed_again(self, space):
        optimizer = self.make(space)
        failed = optimizer.ask(4)
        optimizer.tell([Observation(p, failed=True) for p in failed])
        later = optimizer.ask(8)
        assert not {space.structure_key(p) for p in failed} & {space.structure_key(p) for p in later}

    def test_tell_accepts_points_it_did_not_propose(self, space):
        foreign = self.make(space, seed=7).ask(6)
        optimizer = self.make(space)
        self.observe(optimizer, foreign)
        points = optimizer.ask(2)
        assert len(points) == 2
        assert not {space.structure_key(p) for p in points} & {space.structure_key(p) for p in foreign}

    def test_replicates_of_a_structure_are_one_model_observation_with_their_mean(self, space):
        optimizer = self.make(space)
        point, other = optimizer.ask(2)
        values = synthetic_values(space, point)
        replicates = [{**values, "accuracy": a} for a in (0.6, 0.7, 0.8)]
        optimizer.tell([Observation(point, v) for v in replicates] + [Observation(point, failed=True)])
        optimizer.tell([Observation(other, {**values, "accuracy": float("nan")})])
        kept = {space.structure_key(o.point): o for o in optimizer.model_observations()}
        assert kept[space.structure_key(point)].replicates == 3
        assert kept[space.structure_key(point)].values["accuracy"] == pytest.approx(0.7)
        assert "accuracy" not in kept[space.structure_key(other)].values  # a non-finite value is no evidence
        assert len(optimizer.ask(2)) == 2

    def test_same_seed_and_calls_give_same_points(self, space):
        def run(seed):
            optimizer = self.make(space, seed=seed)
            first = optimizer.ask(3)
            self.observe(optimizer, first)
            return first + optimizer.ask(3)

        assert run(3) == run(3)

    def test_the_conditional_methods_space_gets_feasible_new_points(self):
        """One method categorical, a size per method that only counts when chosen, role switches."""
        space = bind_space(load_space_spec("methods"), tiny_bert())
        optimizer = self.make(space)
        first = optimizer.ask(6)
        self.observe(optimizer, first)
        later = optimizer.ask(3)
        assert len(later) == 3 and all(space.is_feasible(p) for p in later)
        keys = [space.structure_key(p) for p in first + later]
        assert len(set(keys)) == len(keys)

    def test_exhausted_space_returns_fewer_points(self):
        space = bind_space(parse_space(TINY_SPACE), tiny_bert())
        optimizer = self.make(space)
        points = optimizer.ask(5)
        assert len(points) == 2  # ranks 2 and 4; rank 0 adds no module
        assert optimizer.ask(1) == []
