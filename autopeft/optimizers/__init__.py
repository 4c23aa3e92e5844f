"""Optimizers behind one contract (:class:`Optimizer`), by name."""

from autopeft.errors import AutopeftError
from autopeft.optimizers.base import Observation, Optimizer
from autopeft.optimizers.random_search import RandomSearch

OPTIMIZERS: dict[str, type[Optimizer]] = {RandomSearch.name: RandomSearch}


def make_optimizer(name: str, space, objectives, seed: int = 0) -> Optimizer:
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise AutopeftError(f"unknown optimizer '{name}' (choose from {', '.join(OPTIMIZERS)})") from None
    return cls(space, objectives, seed)


__all__ = ["OPTIMIZERS", "Observation", "Optimizer", "RandomSearch", "make_optimizer"]
