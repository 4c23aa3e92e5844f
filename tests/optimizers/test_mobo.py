import pytest
import torch
from botorch.utils.multi_objective.pareto import is_non_dominated

from autopeft.optimizers.axes import axis_matrix
from autopeft.optimizers import Observation
from autopeft.optimizers.mobo import Mobo
from tests.optimizers.contract import OBJECTIVES, OptimizerContract, synthetic_values


class TestMoboContract(OptimizerContract):
    optimizer_class = Mobo

    def make(self, space, seed: int = 0):
        return Mobo(space, OBJECTIVES, seed=seed, initial_points=4, raw_samples=64, num_restarts=2, mc_samples=32)

    def test_enumerated_proposals_stay_next_to_the_observed_front(self, space):
        optimizer = self.make(space)
        assert optimizer.encoded.grid_size() <= optimizer.enumeration_limit
        self.observe(optimizer, optimizer.ask(6))
        proposed = optimizer.ask(2)
        observed = [o.point for o in optimizer.observations]
        axes = axis_matrix([synthetic_values(space, p) for p in observed], OBJECTIVES)
        front = torch.tensor([space.encode(p) for p, keep in zip(observed, is_non_dominated(axes)) if keep])
        for point in proposed:
            differing = (front != torch.tensor(space.encode(point))).sum(-1)
            assert int(differing.min()) <= optimizer.local_radius

    def test_replicates_give_each_observation_the_pooled_seed_variance_over_its_n(self, space):
        optimizer = self.make(space)
        points = optimizer.ask(4)
        self.observe(optimizer, points)
        assert optimizer._noise_variances(optimizer._successful()) is None  # no replicate: inferred noise
        values = synthetic_values(space, points[0])
        optimizer.tell([Observation(points[0], {**values, "accuracy": values["accuracy"] + 0.02})])
        observations = optimizer._successful()
        noise = optimizer._noise_variances(observations)
        assert noise.shape == (4, 1)  # one learned axis: accuracy; trainable_params is exact
        by_n = {o.replicates: float(v) for o, v in zip(observations, noise[:, 0])}
        pooled = 0.02**2 / 2  # two runs 0.02 apart: sample variance 0.0002
        assert by_n == {2: pytest.approx(pooled / 2), 1: pytest.approx(pooled)}
        assert len(optimizer.ask(2)) == 2  # the GP fits with the known noise
