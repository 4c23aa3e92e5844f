"""Tasks: loading datasets into train/dev splits, tokenizing them per model, scoring predictions.

The names below load their module on first use (PEP 562): ``TaskKind`` must not pull in the
loaders and scikit-learn for ``autopeft.apply``.
"""

from importlib import import_module

_HOMES = {
    "load_task": "loading",
    "METRIC_GOALS": "metrics",
    "evaluate_predictions": "metrics",
    "Split": "task",
    "Task": "task",
    "TaskKind": "task",
    "TokenizedSplit": "tokenization",
    "tokenize_split": "tokenization",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'autopeft.tasks' has no attribute {name!r}")
    return getattr(import_module(f"autopeft.tasks.{_HOMES[name]}"), name)
