"""Scheduler fixtures: a prepared job on the real MiniLM and the shipped demo task, tiny fidelity."""

from __future__ import annotations

import pytest

from autopeft.scheduler import JobSpec, prepare
from autopeft.trials import Fidelity

TINY = Fidelity(train_examples=96, steps=6, batch_size=8, max_length=32, learning_rate=2e-3, eval_examples=48)


def tiny_spec(**overrides) -> JobSpec:
    settings = dict(model="minilm", task="demo", trials=4, workers=2, optimizer="random", seed=0, fidelity=TINY)
    return JobSpec(**{**settings, **overrides})


@pytest.fixture(autouse=True)
def _one_ray_head(ray_cluster):
    """Every scheduler test runs its workers on the session's Ray head."""


@pytest.fixture
def prepared():
    return prepare(tiny_spec())
