from autopeft.optimizers import RandomSearch
from tests.optimizers.contract import OptimizerContract


class TestRandomSearchContract(OptimizerContract):
    optimizer_class = RandomSearch
