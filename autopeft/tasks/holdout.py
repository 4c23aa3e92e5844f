"""Holding out examples the same way every time: dev from a single file, the search split from train.

Every task has three splits once a job is prepared: the proxy fine-tunes train on ``train``, the
search scores and chooses on ``search`` (carved from train, disjoint from it), and ``dev`` is only
read to report (``validate``, ``train``, the benchmarks). Choosing on dev would make every reported
dev score optimistic.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import replace

from autopeft.errors import TaskError
from autopeft.tasks.task import Task, TaskKind

HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0
SEARCH_FRACTION = 0.2
SEARCH_MAX = 1000
"""Default search split: 20% of train, at most 1,000 examples (the size of GLUE dev sets)."""


def held_out_rows(
    count: int, fraction: float, strata: Sequence[Hashable] | None, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (kept, held out) of ``count`` rows, with a seeded ``fraction`` held out.

    With ``strata`` (one key per row, e.g. the class label) the fraction is taken from each
    stratum, rounded, so a class too small to spare a row stays in the kept rows. Without strata
    at least one row is held out. Both lists are in row order.
    """
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for index in range(count):
        groups[strata[index] if strata is not None else None].append(index)
    minimum_per_group = 0 if strata is not None else 1
    rng = random.Random(seed)
    held: list[int] = []
    for key in sorted(groups, key=repr):
        members = groups[key]
        held.extend(rng.sample(members, max(minimum_per_group, round(len(members) * fraction))))
    held_set = set(held)
    return [i for i in range(count) if i not in held_set], sorted(held)


def split_off_dev(count: int, source: str, strata: Sequence[Hashable] | None = None) -> tuple[list[int], list[int]]:
    """Indices (train, dev) for ``count`` rows of a single file: a seeded 10% (per stratum) is dev."""
    train, dev = held_out_rows(count, HOLDOUT_FRACTION, strata, HOLDOUT_SEED)
    if not dev or not train:
        raise TaskError(
            f"{source}: {count} rows are too few to hold out {HOLDOUT_FRACTION:.0%} as dev; "
            "give separate train and dev files in a folder"
        )
    return train, dev


def default_search_size(train_size: int) -> int:
    """Examples the search split takes from a training split of ``train_size`` by default."""
    return max(1, min(SEARCH_MAX, round(train_size * SEARCH_FRACTION)))


def with_search_split(task: Task, size: int | None = None, seed: int = 0) -> Task:
    """``task`` with ``size`` training examples moved to its search split (seeded, stratified by class).

    ``size`` defaults to :func:`default_search_size`. Raises TaskError when train cannot spare
    them and keep examples to train on.
    """
    if task.search is not None:
        raise ValueError(f"task {task.name} already has a search split")
    count = len(task.train)
    size = default_search_size(count) if size is None else size
    if not 1 <= size <= count - 1:
        raise TaskError(
            f"{task.name}: --search-examples must be between 1 and {count - 1} "
            f"(the training split has {count} examples), got {size}"
        )
    strata = task.train.labels if task.kind is TaskKind.CLASSIFICATION else None
    kept, held = held_out_rows(count, size / count, strata, seed)
    if not held or not kept:
        raise TaskError(f"{task.name}: {count} training examples are too few to hold out a search split of {size}")
    return replace(task, train=task.train.rows(kept), search=task.train.rows(held))
