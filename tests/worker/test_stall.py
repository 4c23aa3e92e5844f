"""When a proxy run restarts at another rate: it never learnt, or it learnt and collapsed; a plateau
whose best stretch is low by chance does not count."""

import random

from autopeft.worker.proxy import stall_reason

CONSTANT = 0.686
"""SST-2's constant-prediction loss on its training subset (nats)."""
NOISE = 0.125
"""Roughly the standard deviation of a 16-example batch's mean loss on SST-2 mid-training (a generous guess)."""


def noisy(means: list[float], seed: int) -> list[float]:
    rng = random.Random(seed)
    return [m + rng.gauss(0.0, NOISE) for m in means]


def test_a_run_that_never_learnt_stalls():
    assert "stayed at the constant-prediction level" in stall_reason(noisy([0.69] * 150, 0), 15, CONSTANT, 1e-3)


def test_a_run_that_learnt_then_collapsed_stalls():
    descent = [CONSTANT - 0.3 * min(1.0, step / 150) for step in range(300)]
    collapse = [0.39 + 0.29 * (step / 300) for step in range(300)]
    reason = stall_reason(noisy(descent + collapse, 1), 60, CONSTANT, 1e-3)
    assert reason is not None and reason.startswith("training loss rose from")


def collapsed(losses: list[float], window: int) -> bool:
    return (stall_reason(losses, window, CONSTANT, 1e-3) or "").startswith("training loss rose")


def test_plateaus_and_steady_learning_never_count_as_a_collapse():
    for seed in range(200):
        for level in (0.45, 0.60, 0.65):  # learnt well, partly, barely (0.65 may still read as never learnt)
            assert not collapsed(noisy([level] * 150, seed), 15), (seed, level)
        learning = [CONSTANT - 0.3 * step / 600 for step in range(600)]
        assert stall_reason(noisy(learning, seed), 60, CONSTANT, 1e-3) is None, seed
