"""Optimizers behind one contract (:class:`Optimizer`), by name."""

from autopeft.errors import AutopeftError
from autopeft.optimizers.base import Observation, Optimizer
from autopeft.optimizers.mobo import Mobo
from autopeft.optimizers.optuna_samplers import MotpeOptimizer, Nsga2Optimizer
from autopeft.optimizers.random_search import RandomSearch

OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (Mobo, RandomSearch, MotpeOptimizer, Nsga2Optimizer)
}


def make_optimizer(name: str, space, objectives, seed: int = 0) -> Optimizer:
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise AutopeftError(f"unknown optimizer '{name}' (choose from {', '.join(OPTIMIZERS)})") from None
    return cls(space, objectives, seed)


__all__ = [
    "OPTIMIZERS",
    "Mobo",
    "MotpeOptimizer",
    "Nsga2Optimizer",
    "Observation",
    "Optimizer",
    "RandomSearch",
    "make_optimizer",
]
