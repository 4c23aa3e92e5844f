"""Putting a structure's modules into a live model, and taking them out again."""

from autopeft.injection.apply import AppliedStructure, apply_structure, head_parameters, reset_head

__all__ = ["AppliedStructure", "apply_structure", "head_parameters", "reset_head"]
