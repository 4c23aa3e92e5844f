"""Optuna's samplers pass the optimizer contract and see conditional dimensions as Optuna does."""

from autopeft.optimizers.optuna_samplers import MotpeOptimizer, Nsga2Optimizer
from autopeft.space.schema import load_space_spec
from autopeft.space.search_space import bind_space
from autopeft.optimizers import Observation
from tests.optimizers.contract import OBJECTIVES, OptimizerContract, synthetic_values
from tests.space.tiny_models import tiny_bert


class TestMotpeContract(OptimizerContract):
    optimizer_class = MotpeOptimizer


class TestNsga2Contract(OptimizerContract):
    optimizer_class = Nsga2Optimizer


def test_a_method_s_size_is_a_study_parameter_only_in_trials_that_chose_that_method():
    space = bind_space(load_space_spec("methods"), tiny_bert())
    optimizer = MotpeOptimizer(space, OBJECTIVES)
    for _ in range(4):
        points = optimizer.ask(4)
        optimizer.tell([Observation(p, synthetic_values(space, p)) for p in points])
    finished = [t for t in optimizer.study.trials if t.values is not None]
    assert len(finished) == 16
    for trial in finished:
        sizes = {name for name in trial.params if name.endswith(".size")}
        assert sizes == {f"method.{trial.params['method']}.size"} & set(space.names)
