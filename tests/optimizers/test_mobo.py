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

    def test_trials_on_a_constant_prediction_plateau_are_modelled_apart(self, space):
        optimizer = self.make(space)
        optimizer.collapse_aware = True
        points = optimizer.ask(4) + optimizer.ask(4)
        # The first three "collapsed": exactly the same, lowest accuracy (a constant predictor).
        optimizer.tell([
            Observation(p, {**synthetic_values(space, p), "accuracy": 0.4 if i < 3 else synthetic_values(space, p)["accuracy"]})
            for i, p in enumerate(points)
        ])  # fmt: skip
        acquisition = optimizer._acquisition([])
        collapse_gp = acquisition.model.models[1]  # after the accuracy GP: the 0/1 collapse indicator
        assert collapse_gp.train_targets.numel() == 8
        assert acquisition.model.models[0].train_targets.numel() == 5  # accuracy: working trials only
        assert len(acquisition.constraints) == 2  # feasibility slack, then P(collapse) < 1/2
        proposed = optimizer.ask(2)
        assert len(proposed) == 2
        observed = [o.point for o in optimizer.observations[3:]]
        axes = axis_matrix([synthetic_values(space, p) for p in observed], OBJECTIVES)
        front = torch.tensor([space.encode(p) for p, keep in zip(observed, is_non_dominated(axes)) if keep])
        for point in proposed:  # the neighbourhood is that of the working trials' front
            assert int((front != torch.tensor(space.encode(point))).sum(-1).min()) <= optimizer.local_radius

    def test_without_a_plateau_or_when_switched_off_the_model_is_one_gp_per_learned_objective(self, space):
        optimizer = self.make(space)
        assert not optimizer.collapse_aware  # off by default
        points = optimizer.ask(8)
        optimizer.tell([Observation(p, {**synthetic_values(space, p), "accuracy": 0.4 if i < 3 else 0.5 + i / 100})
                        for i, p in enumerate(points)])  # fmt: skip
        optimizer.collapse_aware = False
        assert len(optimizer._acquisition([]).model.models) == 2  # accuracy GP, exact outputs
        optimizer.collapse_aware = True
        optimizer.observations = optimizer.observations[1:]  # two tied trials are not a plateau
        assert len(optimizer._acquisition([]).model.models) == 2
