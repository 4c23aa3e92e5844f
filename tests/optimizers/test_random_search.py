from autopeft.optimizers import RandomSearch
from tests.optimizers.contract import OptimizerContract


class TestRandomSearchContract(OptimizerContract):
    optimizer_class = RandomSearch


def test_model_observations_keep_the_highest_rung_of_each_structure():
    from autopeft.objectives import Objective
    from autopeft.optimizers import Observation
    from autopeft.space import parse_space
    from autopeft.space.search_space import bind_space
    from tests.optimizers.contract import SPACE
    from tests.space.tiny_models import tiny_bert

    space = bind_space(parse_space(SPACE), tiny_bert())
    optimizer = RandomSearch(space, [Objective("accuracy", "max")], seed=0)
    first, second = optimizer.ask(2)
    optimizer.tell([Observation(first, {"accuracy": 0.6}), Observation(second, {"accuracy": 0.7}),
                    Observation(first, {"accuracy": 0.8}, rung=1)])
    kept = {space.structure_key(o.point): o.values["accuracy"] for o in optimizer.model_observations()}
    assert kept == {space.structure_key(first): 0.8, space.structure_key(second): 0.7}
