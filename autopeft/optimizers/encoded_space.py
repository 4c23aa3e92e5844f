"""A search space as BoTorch sees it: a box of encoded vectors with discrete and categorical axes.

Coordinates follow :mod:`autopeft.space.dimensions`: a Choice is an ordered index and is
optimised as an integer, a Flag is a binary integer, a Categorical is an unordered index (GP
kernel and acquisition search treat its values as unrelated), a Real is continuous.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from autopeft.space.dimensions import Categorical, Choice, Flag

DTYPE = torch.double


@dataclass(frozen=True)
class EncodedSpace:
    """Attributes:
    bounds: (2, d) lower and upper coordinate per dimension.
    discrete_dims: index -> allowed coordinates, for ordered integer dimensions (Choice, Flag).
    cat_dims: index -> allowed coordinates, for Categorical dimensions.
    """

    bounds: torch.Tensor
    discrete_dims: dict[int, list[float]]
    cat_dims: dict[int, list[float]]

    @classmethod
    def of(cls, space) -> EncodedSpace:
        discrete, categorical = {}, {}
        for index, dim in enumerate(space.dimensions):
            if isinstance(dim, (Choice, Flag)):
                low, high = dim.bounds
                discrete[index] = [float(v) for v in range(int(low), int(high) + 1)]
            elif isinstance(dim, Categorical):
                categorical[index] = [float(v) for v in range(len(dim.values))]
        bounds = torch.tensor(space.bounds, dtype=DTYPE).T.contiguous()
        return cls(bounds=bounds, discrete_dims=discrete, cat_dims=categorical)

    @property
    def dim(self) -> int:
        return self.bounds.shape[-1]

    @property
    def continuous_dims(self) -> list[int]:
        return [i for i in range(self.dim) if i not in self.discrete_dims and i not in self.cat_dims]

    def grid_size(self) -> float:
        """Number of distinct encoded vectors; infinite when a dimension is continuous."""
        if self.continuous_dims:
            return math.inf
        return math.prod(len(v) for v in (*self.discrete_dims.values(), *self.cat_dims.values()))

    def grid(self) -> torch.Tensor:
        """Every encoded vector of a fully discrete space, shape (grid_size, d)."""
        if self.continuous_dims:
            raise ValueError("a space with continuous dimensions has no finite grid")
        axes = [self.discrete_dims.get(i) or self.cat_dims[i] for i in range(self.dim)]
        return torch.tensor(list(itertools.product(*axes)), dtype=DTYPE).reshape(-1, self.dim)

    def neighbours(self, x: torch.Tensor) -> torch.Tensor:
        """Vectors differing from ``x`` (shape (d,)) in one discrete or categorical coordinate, (k, d)."""
        rows = []
        for index, values in (*self.discrete_dims.items(), *self.cat_dims.items()):
            for value in values:
                if value != float(x[index]):
                    row = x.clone()
                    row[index] = value
                    rows.append(row)
        return torch.stack(rows) if rows else x.new_empty(0, self.dim)
