from autopeft.optimizers.mobo import Mobo
from tests.optimizers.contract import OBJECTIVES, OptimizerContract


class TestMoboContract(OptimizerContract):
    optimizer_class = Mobo

    def make(self, space, seed: int = 0):
        return Mobo(space, OBJECTIVES, seed=seed, initial_points=4, raw_samples=64, num_restarts=2, mc_samples=32)
