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
