"""Tasks: loading datasets into train/dev splits, tokenizing them per model, scoring predictions."""

from autopeft.tasks.loading import load_task
from autopeft.tasks.metrics import METRIC_GOALS, evaluate_predictions
from autopeft.tasks.task import Split, Task, TaskKind
from autopeft.tasks.tokenization import TokenizedSplit, tokenize_split

__all__ = [
    "METRIC_GOALS",
    "Split",
    "Task",
    "TaskKind",
    "TokenizedSplit",
    "evaluate_predictions",
    "load_task",
    "tokenize_split",
]
