"""The sensitivity-aware allocator: a budget, a rule and a sharpness in, per-matrix LoRA ranks out.

A search over a deep model cannot give every matrix its own rank dimension (SmolLM2 has 210
matrices), so the optimizer searches a parameter budget, an allocation rule and a sharpness, and
:func:`allocate` decodes them into a :class:`~autopeft.space.structure.Structure` whose exact
trainable count (task head included) never exceeds the budget and lands within 10% below it.

Rules (the *candidates* are the allowed roles' matrices in every layer):

- ``uniform``: every candidate gets LoRA, at equal ranks.
- ``spt``: SPT's switch rule picks the matrices. With τ = the module budget (budget minus task
  head) as a fraction of all role-matrix weights, a candidate gets LoRA when its number of
  weights in the global top-τ reaches ``1 / switch_factor`` of its *reference module*: the LoRA
  it would get if the budget were spread at one rank over all candidates. Ranks among the
  picked matrices are ∝ score ** sharpness (score = Σ (∂L/∂w)² over the matrix).
- ``spt_sparse``: SPT complete. The same switch rule picks the LoRA matrices; every other
  candidate gets a sparse delta on exactly its weights in the global top-τ (SPT's unstructured
  half), and LoRA spends what the deltas leave. The deltas train the top of the job's
  ``sensitivity`` entry ranking, the same squared gradients the scores sum.
- ``ist``: every candidate can get LoRA, with ranks ∝ layer_importance ** sharpness of its layer.

From weights to integers: continuous ranks r_p = λ w_p, clipped to [1, min(in, out)], with λ
chosen so the parameters exactly fill the budget; each is rounded down, and the rest of the
budget goes +1 at a time to the matrices that lost most to rounding (then to any that still
fits). What is left over is less than one rank of the cheapest matrix, which is what bounds the
landing. So "equal ranks" means ranks that differ by at most one: a single rank everywhere can
miss the budget by up to half (MiniLM, all six roles, 0.5%: rank 2 everywhere spends 74%).

Under ``spt`` and ``ist`` a matrix whose continuous rank is below one half gets no module at all,
the least deserving first, and a layer left without modules is off (it simply has no ranks).

Fallbacks, both under ``spt``: when no matrix passes the switch rule, the highest-scoring one is
taken; when the picked matrices cannot absorb the budget even at full rank, or the result lands
below 90% of it, further matrices join in score order.

Errors: BudgetError when even the smallest allocation of the rule (rank 1 on every candidate for
``uniform``, rank 1 on the most deserving matrix otherwise) exceeds the budget, or when full-rank
LoRA on every candidate cannot reach 90% of it. The 10% landing is guaranteed whenever the budget
for modules is at least ten times the largest per-rank cost (in + out) of a candidate; below that,
integer ranks may not be able to land closer, and the closest fill is returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from autopeft.space.sensitivity import Sensitivity
from autopeft.errors import BudgetError, SpaceError
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import LoraModules, LoraVariant, Place, SparseDeltas, Structure, place_key

AllocationRule = Literal["uniform", "spt", "spt_sparse", "ist"]
ALLOCATION_RULES: tuple[AllocationRule, ...] = ("uniform", "spt", "spt_sparse", "ist")
SCORES_OF_RULE = {"spt": "spt", "spt_sparse": "spt", "ist": "ist"}
"""The sensitivity method whose scores a rule allocates by (``uniform`` needs none)."""

LANDING = 0.9
"""An allocation spends at least this share of the budget (when integer ranks allow it)."""

DROP_BELOW_RANK = 0.5
"""Under spt and ist, a matrix whose continuous rank is below this gets no module."""


@dataclass(frozen=True)
class _Candidates:
    """Matrices that may carry LoRA, most deserving first; arrays of shape (M,).

    Attributes:
        places: (layer, role) of each matrix.
        per_rank: parameters one rank costs (in + out).
        fixed: parameters the module costs at any rank (DoRA's magnitude vector; else 0).
        caps: largest useful rank, min(in, out).
        weights: continuous ranks are proportional to these (in [0, 1]).
    """

    places: tuple[Place, ...]
    per_rank: np.ndarray
    fixed: np.ndarray
    caps: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.places)

    def first(self, count: int) -> _Candidates:
        return _Candidates(
            self.places[:count], self.per_rank[:count], self.fixed[:count], self.caps[:count], self.weights[:count]
        )

    def capacity(self) -> int:
        """Parameters of full-rank LoRA on every candidate."""
        return int((self.caps * self.per_rank + self.fixed).sum())


def allocate(
    layout: ModelLayout,
    sensitivity: Sensitivity | None,
    *,
    budget_params: int,
    rule: AllocationRule,
    sharpness: float,
    roles: Sequence[str],
    variant: LoraVariant = "lora",
    alpha_ratio: float = 2.0,
    switch_factor: float = 10.0,
) -> Structure:
    """LoRA ranks for the ``roles`` matrices of ``layout`` spending at most ``budget_params``.

    Args:
        layout: the model's layout.
        sensitivity: SPT scores for ``rule="spt"``, IST importance for ``rule="ist"``; unused
            (may be None) for ``uniform``.
        budget_params: most trainable parameters, task head included (as ``count_trainable``).
        rule: ``uniform``, ``spt`` or ``ist`` (module docstring).
        sharpness: exponent on scores / importance; 0 gives equal ranks, larger concentrates.
        roles: canonical roles (``q``, ``v``, ``down``...) that may carry LoRA.
        variant, alpha_ratio: written into the structure's :class:`LoraModules`.
        switch_factor: SPT's switch divisor (SPT used 10).

    Raises:
        BudgetError: the budget is below the rule's smallest allocation, or beyond full rank.
    """
    if sharpness < 0:
        raise ValueError(f"sharpness must be >= 0, got {sharpness}")
    places = _allowed_places(layout, roles)
    module_budget = int(budget_params) - layout.head_params
    least_modules = math.ceil(LANDING * budget_params) - layout.head_params
    if rule not in ALLOCATION_RULES:
        raise ValueError(f"unknown allocation rule {rule!r} (known: {', '.join(ALLOCATION_RULES)})")
    deltas: dict[Place, int] = {}
    if rule in ("spt", "spt_sparse"):
        candidates = _spt_candidates(layout, places, _require_spt(sensitivity), module_budget, least_modules,
                                     sharpness=sharpness, variant=variant, switch_factor=switch_factor)
        if rule == "spt_sparse":
            deltas = _sparse_half(layout, places, sensitivity, candidates, module_budget)
    elif rule == "ist":
        candidates = _ist_candidates(layout, places, _require_ist(sensitivity, layout), sharpness, variant)
    else:
        candidates = _candidates(layout, places, np.ones(len(places)), 0.0, variant)
    sparse_spend = sum(deltas.values())
    ranks = _ranks(candidates, module_budget - sparse_spend, least_modules - sparse_spend,
                   droppable=rule != "uniform")
    _check_budget(candidates, ranks, budget_params, least_modules - sparse_spend, layout.head_params, rule)
    return Structure(
        lora=LoraModules(
            ranks={place: rank for place, rank in zip(candidates.places, ranks) if rank > 0},
            variant=variant,
            alpha_ratio=alpha_ratio,
        ),
        sparse=SparseDeltas(deltas, "sensitivity") if deltas else None,
    )


def largest_sparse_delta(layout: ModelLayout, roles: Sequence[str], budget_params: int, switch_factor: float) -> int:
    """An upper bound, in units of ``in + out`` entries, on the sparse delta ``spt_sparse`` gives a
    matrix at budgets up to ``budget_params``: a matrix that misses the switch holds fewer top-τ
    weights than its reference module (at most budget / Σ(in + out) ranks, DoRA's magnitudes
    included in the + 1) divided by the switch factor. The entry ranking is kept this deep."""
    shapes = [layout.matrix(*place) for place in _allowed_places(layout, roles)]
    reference_rank = max(1.0, budget_params / sum(s.in_features + s.out_features for s in shapes))
    return math.ceil(reference_rank / switch_factor) + 1


# ------------------------------------------------------------------------------- candidates
def _allowed_places(layout: ModelLayout, roles: Sequence[str]) -> list[Place]:
    if not roles:
        raise ValueError("allocation needs at least one role")
    unknown = [role for role in roles if role not in layout.roles]
    if unknown:
        raise SpaceError(
            f"model type '{layout.model_type}' has no role {', '.join(unknown)} (roles: {', '.join(layout.roles)})"
        )
    return [(layer.index, role) for layer in layout.layers for role in roles if role in layer.matrices]


def _candidates(
    layout: ModelLayout, places: Sequence[Place], merit: np.ndarray, sharpness: float, variant: str
) -> _Candidates:
    """Candidates in the given order, weighted (merit / largest merit) ** sharpness."""
    shapes = [layout.matrix(layer, role) for layer, role in places]
    largest = merit.max() if len(merit) else 0.0
    return _Candidates(
        places=tuple(places),
        per_rank=np.array([s.in_features + s.out_features for s in shapes], dtype=np.float64),
        fixed=np.array([s.out_features if variant == "dora" else 0 for s in shapes], dtype=np.float64),
        caps=np.array([min(s.in_features, s.out_features) for s in shapes], dtype=np.float64),
        weights=(merit / largest) ** sharpness if largest > 0 else np.ones(len(merit)),
    )


def _require_spt(sensitivity: Sensitivity | None) -> Sensitivity:
    if sensitivity is None or not sensitivity.has_matrix_scores:
        raise ValueError("rule 'spt' needs SPT sensitivities (measure_spt)")
    return sensitivity


def _require_ist(sensitivity: Sensitivity | None, layout: ModelLayout) -> np.ndarray:
    if sensitivity is None or not sensitivity.layer_importance:
        raise ValueError("rule 'ist' needs IST layer importance (measure_ist)")
    if len(sensitivity.layer_importance) != layout.num_layers:
        raise ValueError(
            f"IST importance covers {len(sensitivity.layer_importance)} layers, the model has {layout.num_layers}"
        )
    return np.array(sensitivity.layer_importance, dtype=np.float64)


def _spt_candidates(
    layout: ModelLayout, places: Sequence[Place], sensitivity: Sensitivity, module_budget: int,
    least_modules: int, *, sharpness: float, variant: str, switch_factor: float,
) -> _Candidates:
    """Matrices passing SPT's switch rule, by score; more by score when they cannot fill the budget."""
    keys = [place_key(place) for place in places]
    missing = [key for key in keys if key not in sensitivity.sensitive_counts]
    if missing:
        raise ValueError(f"the SPT sensitivities have no matrix {missing[0]}: measured on another model?")
    scores = np.array([sensitivity.matrix_scores[key] for key in keys])
    by_score = np.argsort(-scores, kind="stable")
    everyone = _candidates(layout, [places[i] for i in by_score], scores[by_score], sharpness, variant)
    counts = sensitivity.sensitive_counts_at(max(module_budget, 0) / sensitivity.total_weights)
    reference_rank = max(1, int((module_budget - everyone.fixed.sum()) // everyone.per_rank.sum()))
    reference_params = reference_rank * everyone.per_rank + everyone.fixed
    passes = np.array([counts[place_key(p)] for p in everyone.places]) >= reference_params / switch_factor
    order = np.concatenate([np.flatnonzero(passes), np.flatnonzero(~passes)])
    chosen = _take(everyone, order)
    picked = max(1, int(passes.sum()))
    while picked < len(chosen) and chosen.first(picked).capacity() < least_modules:
        picked += 1
    return chosen.first(picked)


def _sparse_half(layout: ModelLayout, places: Sequence[Place], sensitivity: Sensitivity, lora: _Candidates,
                 module_budget: int) -> dict[Place, int]:
    """SPT's unstructured half: place -> its count of weights in the global top-τ, for every
    candidate that did not get LoRA. The least sensitive deltas give way while the rest would leave
    less than rank 1 on the first LoRA matrix."""
    counts = sensitivity.sensitive_counts_at(max(module_budget, 0) / sensitivity.total_weights)
    with_lora = set(lora.places)
    rest = [place for place in places if place not in with_lora]
    rest.sort(key=lambda place: -sensitivity.matrix_scores[place_key(place)])
    deltas = {place: min(round(counts[place_key(place)]), layout.matrix(*place).numel) for place in rest}
    deltas = {place: k for place, k in deltas.items() if k > 0}
    first_lora = lora.per_rank[0] + lora.fixed[0]
    while deltas and module_budget - sum(deltas.values()) < first_lora:
        deltas.pop(next(reversed(deltas)))
    return deltas


def _take(candidates: _Candidates, order: np.ndarray) -> _Candidates:
    return _Candidates(
        places=tuple(candidates.places[i] for i in order),
        per_rank=candidates.per_rank[order],
        fixed=candidates.fixed[order],
        caps=candidates.caps[order],
        weights=candidates.weights[order],
    )


def _ist_candidates(
    layout: ModelLayout, places: Sequence[Place], importance: np.ndarray, sharpness: float, variant: str
) -> _Candidates:
    layer_importance = np.array([importance[layer] for layer, _ in places])
    by_importance = np.argsort(-layer_importance, kind="stable")
    return _candidates(layout, [places[i] for i in by_importance], layer_importance[by_importance], sharpness, variant)


# ---------------------------------------------------------------------------------- ranks
def _ranks(candidates: _Candidates, budget: int, least: int, *, droppable: bool) -> list[int]:
    """Integer ranks (0 = no module) per candidate; ``least`` is the spend to reach if possible."""
    if budget < _smallest(candidates, droppable):
        return [0] * len(candidates)  # _check_budget explains
    kept = _kept(candidates, budget) if droppable else len(candidates)
    rank_one_cost = np.cumsum(candidates.per_rank + candidates.fixed)
    while True:
        ranks = _filled(candidates.first(kept), budget)
        spent = sum(r * c for r, c in zip(ranks, candidates.per_rank)) + candidates.fixed[:kept].sum()
        if spent >= least or kept == len(candidates) or rank_one_cost[kept] > budget:
            return ranks + [0] * (len(candidates) - kept)
        kept += 1  # integer ranks on too few matrices cannot land: one more matrix joins


def _smallest(candidates: _Candidates, droppable: bool) -> int:
    """Parameters of the rule's smallest allocation: rank 1 on the first or on every candidate."""
    one_rank = candidates.per_rank + candidates.fixed
    return int(one_rank[0] if droppable else one_rank.sum())


def _kept(candidates: _Candidates, budget: int) -> int:
    """How many leading candidates get a module: every one whose continuous rank reaches
    DROP_BELOW_RANK and whose rank-1 modules all fit (both hold for a prefix of the order)."""
    weights = candidates.weights
    rank_one_cost = np.cumsum(candidates.per_rank + candidates.fixed)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (budget - np.cumsum(candidates.fixed)) / np.cumsum(weights * candidates.per_rank)
        keeps = (rank_one_cost <= budget) & (scale * weights >= DROP_BELOW_RANK)
    return max(1, len(keeps) if keeps.all() else int(np.argmin(keeps)))


def _filled(candidates: _Candidates, budget: int) -> list[int]:
    """Integer ranks in [1, cap] spending at most ``budget``: continuous ranks rounded down,
    then +1 where rounding lost most, while anything fits."""
    targets = _continuous_ranks(candidates, budget - candidates.fixed.sum())
    ranks = [int(t) for t in np.floor(targets)]
    per_rank = candidates.per_rank.tolist()
    caps = candidates.caps.tolist()
    left = budget - candidates.fixed.sum() - sum(r * c for r, c in zip(ranks, per_rank))
    order = np.argsort(-(targets - np.floor(targets)), kind="stable").tolist()
    grew = True
    while grew:
        grew = False
        for i in order:
            if ranks[i] < caps[i] and per_rank[i] <= left:
                ranks[i] += 1
                left -= per_rank[i]
                grew = True
    return ranks


def _continuous_ranks(candidates: _Candidates, spend: float) -> np.ndarray:
    """r = clip(λ w, 1, cap) with the largest λ such that Σ r * per_rank <= spend (bisection)."""
    weights, per_rank, caps = candidates.weights, candidates.per_rank, candidates.caps

    def cost(scale: float) -> float:
        return float((np.clip(scale * weights, 1.0, caps) * per_rank).sum())

    if (caps * per_rank).sum() <= spend:
        return caps.copy()
    weighted = weights > 0  # a zero weight (a score of 0) keeps rank 1 at any λ
    low, high = 0.0, float((caps[weighted] / weights[weighted]).max(initial=1.0))
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cost(middle) <= spend else (low, middle)
    return np.clip(low * weights, 1.0, caps)


def _check_budget(
    candidates: _Candidates, ranks: Sequence[int], budget_params: int, least_modules: int, head: int, rule: str
) -> None:
    """Raise BudgetError, in one line, when the rule cannot spend the budget at all."""
    if not any(ranks):
        what = "rank 1 on every allowed matrix" if rule == "uniform" else "rank 1 on its first matrix"
        smallest = _smallest(candidates, droppable=rule != "uniform") + head
        raise BudgetError(
            f"a budget of {budget_params:,} trainable parameters is below the smallest '{rule}' allocation: "
            f"{smallest:,} ({what}, task head included)"
        )
    if candidates.capacity() < least_modules:
        raise BudgetError(
            f"a budget of {budget_params:,} trainable parameters is beyond full-rank LoRA on every allowed "
            f"matrix ({candidates.capacity() + head:,}, task head included) by more than {1 - LANDING:.0%}"
        )
