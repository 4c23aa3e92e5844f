"""The reports' non-dominated sort is botorch's, on random fronts with ties and duplicates."""

import random

import torch
from botorch.utils.multi_objective.pareto import is_non_dominated

from autopeft.objectives import _non_dominated_mask


def test_the_numpy_sort_marks_exactly_what_botorch_marks():
    rng = random.Random(0)
    for case in range(300):
        rows, columns = rng.randint(1, 40), rng.randint(1, 4)
        grid = rng.choice([3, 10, 1000])  # coarse grids make ties and duplicate rows
        values = [[rng.randrange(grid) / grid for _ in range(columns)] for _ in range(rows)]
        expected = is_non_dominated(torch.tensor(values, dtype=torch.double), deduplicate=False).tolist()
        assert _non_dominated_mask(values) == expected, (case, values)


def test_a_large_set_is_sorted_by_botorch_without_pairwise_arrays():
    from autopeft.objectives import NUMPY_FRONT_MAX_ROWS

    rng = random.Random(1)
    values = [[rng.random(), -rng.randrange(1000)] for _ in range(NUMPY_FRONT_MAX_ROWS * 25)]  # 51,200 rows
    mask = _non_dominated_mask(values)
    front = {tuple(v) for v, keep in zip(values, mask) if keep}
    assert 0 < len(front) < 200
    assert all(not (o[0] >= f[0] and o[1] >= f[1] and o != f) for f in front for o in values[:2000])
