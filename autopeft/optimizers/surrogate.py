"""The models behind MOBO: one GP per learned objective, closed-form objectives computed exactly.

The model is a botorch ``ModelList`` whose outputs are, in order: the learned objectives' axes
(one GP each), optionally a collapse indicator (a GP of 1 for a collapsed trial, 0 otherwise; see
:func:`collapsed_trials`), the closed-form objectives' axes, and a feasibility slack (``-1``
feasible, ``+1`` infeasible) that qLogNEHVI takes as an outcome constraint. Axes are those of
:mod:`autopeft.optimizers.axes` (maximised, costs in log10).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import MixedSingleTaskGP, ModelList, SingleTaskGP
from botorch.models.deterministic import GenericDeterministicModel
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood

from autopeft.objectives import Objective
from autopeft.optimizers.axes import to_axis
from autopeft.optimizers.encoded_space import DTYPE, EncodedSpace


def fit_gp(
    train_x: torch.Tensor, train_y: torch.Tensor, encoded: EncodedSpace, train_yvar: torch.Tensor | None = None
) -> SingleTaskGP:
    """A GP of one objective axis fitted by marginal likelihood.

    Args:
        train_x: (n, d) encoded points.
        train_y: (n, 1) axis values.
        encoded: which coordinates are categorical; all others are normalised to [0, 1].
        train_yvar: (n, 1) known observation noise variances, or None to infer one noise level.

    Categorical coordinates get botorch's categorical kernel (``MixedSingleTaskGP``); ordered
    integers and flags share a Matern kernel with continuous coordinates.
    """
    ordered = [i for i in range(encoded.dim) if i not in encoded.cat_dims]
    normalize = Normalize(d=encoded.dim, indices=ordered, bounds=encoded.bounds)
    if encoded.cat_dims:
        gp = MixedSingleTaskGP(
            train_x, train_y, cat_dims=list(encoded.cat_dims), train_Yvar=train_yvar, input_transform=normalize,
            outcome_transform=Standardize(m=1),
        )  # fmt: skip
    else:
        gp = SingleTaskGP(
            train_x, train_y, train_Yvar=train_yvar, input_transform=normalize, outcome_transform=Standardize(m=1)
        )
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


class ClosedFormObjectives:
    """Closed-form objective axes and the feasibility slack of encoded points, memoised per vector.

    ``values(X)`` maps (..., d) encoded points to (..., k + 1): one axis per closed-form objective,
    then the slack. Coordinates are rounded the way the space decodes them.
    """

    def __init__(self, space, objectives: Sequence[Objective]) -> None:
        self.space = space
        self.objectives = list(objectives)
        self._memo: dict[tuple, tuple[float, ...]] = {}

    def row(self, vector: Sequence[float]) -> tuple[float, ...]:
        key = tuple(vector)
        if key not in self._memo:
            point = self.space.to_point(vector)
            costs = {"trainable_params": float(self.space.trainable_params(point))}
            slack = -1.0 if self.space.is_feasible(point) else 1.0
            self._memo[key] = (*(to_axis(o, costs[o.name]) for o in self.objectives), slack)
        return self._memo[key]

    def values(self, X: torch.Tensor) -> torch.Tensor:
        flat = X.detach().reshape(-1, X.shape[-1]).tolist()
        rows = torch.tensor([self.row(v) for v in flat], dtype=DTYPE, device=X.device)
        return rows.reshape(*X.shape[:-1], len(self.objectives) + 1)


MIN_COLLAPSED = 3
"""Trials that must share the worst value of a metric exactly before it is taken for a plateau."""


def collapsed_trials(train_y: torch.Tensor, column: int = 0, minimum: int = MIN_COLLAPSED) -> torch.Tensor | None:
    """(n,) mask of the trials sitting on a plateau at the worst value of axis ``column``, or None.

    A fine-tune that learned nothing predicts a constant and scores exactly the constant
    prediction's level (on a fixed evaluation set, the same accuracy whatever the structure); its
    value says that it collapsed, not how good a working fine-tune of that structure would be. A
    plateau is recognised in the observations alone: at least ``minimum`` trials share the
    column's lowest value exactly, and at least ``minimum`` trials lie above it.
    """
    values = train_y[:, column]
    mask = values == values.min()
    if int(mask.sum()) < minimum or int((~mask).sum()) < minimum:
        return None
    return mask


def surrogate_model(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    encoded: EncodedSpace,
    closed_form: ClosedFormObjectives,
    train_yvar: torch.Tensor | None = None,
    collapsed: torch.Tensor | None = None,
) -> ModelList:
    """GPs for the ``train_y`` columns ((n, L) learned axes), then the closed-form outputs.

    The GPs are fitted independently: one per learned objective, with the matching column of
    ``train_yvar`` ((n, L) known noise variances) when given. With a ``collapsed`` mask ((n,),
    from :func:`collapsed_trials` on column 0), the first GP is fitted on the other trials only
    (it models the metric of fine-tunes that learned), and a second GP, of the 0/1 collapse
    indicator on every trial, follows the learned outputs.
    """
    gps = []
    for j in range(train_y.shape[-1]):
        rows = slice(None) if collapsed is None or j else ~collapsed
        yvar = None if train_yvar is None else train_yvar[rows][:, [j]]
        gps.append(fit_gp(train_x[rows], train_y[rows][:, [j]], encoded, yvar))
    if collapsed is not None:
        gps.append(fit_gp(train_x, collapsed.to(DTYPE).unsqueeze(-1), encoded))
    exact = GenericDeterministicModel(closed_form.values, num_outputs=len(closed_form.objectives) + 1)
    return ModelList(*gps, exact)
