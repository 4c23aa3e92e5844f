from autopeft.optimizers.optuna_samplers import MotpeOptimizer, Nsga2Optimizer
from tests.optimizers.contract import OptimizerContract


class TestMotpeContract(OptimizerContract):
    optimizer_class = MotpeOptimizer


class TestNsga2Contract(OptimizerContract):
    optimizer_class = Nsga2Optimizer
