"""Sensitivity-aware budgets: SPT and IST scores measured once per (model, task), and the
allocator that turns a searched budget, rule and sharpness into per-matrix LoRA ranks."""

from autopeft.allocation.allocator import ALLOCATION_RULES, AllocationRule, allocate
from autopeft.allocation.ist import measure_ist
from autopeft.allocation.sensitivity import TAU_GRID, Sensitivity
from autopeft.allocation.spt import measure_spt, top_fraction_counts

__all__ = [
    "ALLOCATION_RULES",
    "TAU_GRID",
    "AllocationRule",
    "Sensitivity",
    "allocate",
    "measure_ist",
    "measure_spt",
    "top_fraction_counts",
]
