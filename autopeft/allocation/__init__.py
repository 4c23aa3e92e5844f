"""Measurements on a live model and task data, made once per (model, task, settings): SPT
gradients (:mod:`.spt`) and IST loss probes (:mod:`.ist`) for budgeted spaces, what data-driven
LoRA inits start from (:mod:`.lora_init`: EVA's input vectors, :mod:`.eva`; CorDA's triplets,
:mod:`.corda`), and entry rankings for sparse updates (:mod:`.sparse_rankings`).

The scores (:class:`autopeft.space.sensitivity.Sensitivity`) and the allocator that turns them
into per-matrix ranks (:mod:`autopeft.space.allocation`) belong to the search space, which decodes
budgeted points with them.
"""

from autopeft.allocation.ist import measure_ist
from autopeft.allocation.spt import measure_spt, top_fraction_counts

__all__ = ["measure_ist", "measure_spt", "top_fraction_counts"]
