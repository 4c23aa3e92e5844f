import torch
from botorch.utils.multi_objective.pareto import is_non_dominated

from autopeft.optimizers.axes import axis_matrix
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
