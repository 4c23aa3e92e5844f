"""Base models: resolving a name to weights on disk, and loading them for a task."""

from autopeft.models.loading import TaskHead, build_skeleton, load_base_model, load_tokenizer
from autopeft.models.resolve import ModelRef, resolve_model

__all__ = ["ModelRef", "TaskHead", "build_skeleton", "load_base_model", "load_tokenizer", "resolve_model"]
