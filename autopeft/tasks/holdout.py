"""Holding out a dev set from a single file, the same way every time."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence

from autopeft.errors import TaskError

HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0


def split_off_dev(count: int, source: str, strata: Sequence[Hashable] | None = None) -> tuple[list[int], list[int]]:
    """Indices (train, dev) for ``count`` rows: a seeded random 10% is held out as dev.

    With ``strata`` (one key per row, e.g. the class label) 10% of each stratum is held out,
    rounded, so a class too small to spare a row stays in train and no dev label is unseen in
    train. Both lists are in row order.
    """
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for index in range(count):
        groups[strata[index] if strata is not None else None].append(index)
    minimum_per_group = 0 if strata is not None else 1
    rng = random.Random(HOLDOUT_SEED)
    dev: list[int] = []
    for key in sorted(groups, key=repr):
        members = groups[key]
        held_out = max(minimum_per_group, round(len(members) * HOLDOUT_FRACTION))
        dev.extend(rng.sample(members, held_out))
    if not dev or len(dev) == count:
        raise TaskError(
            f"{source}: {count} rows are too few to hold out {HOLDOUT_FRACTION:.0%} as dev; "
            "give separate train and dev files in a folder"
        )
    dev_set = set(dev)
    return [i for i in range(count) if i not in dev_set], sorted(dev)
