"""The in-memory shape of a task: its kind, its train and dev splits, its label set and metric."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class TaskKind(StrEnum):
    """What the model predicts, which decides the head, the labels and the metrics."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    CAUSAL_LM = "causal_lm"


@dataclass(frozen=True)
class Split:
    """One split of a task, as text (tokenization comes later, per model).

    ``texts[i]`` holds example i's text fields: ``(sentence,)`` or ``(sentence1, sentence2)`` for
    classification and regression; ``(prompt, response)`` for instruction data and ``(text,)``
    for plain language-model chunks. ``labels[i]`` is a class id (an index into
    ``Task.label_names``) or a float target; it is ``None`` for causal LM, whose targets are the
    tokens themselves.
    """

    texts: tuple[tuple[str, ...], ...]
    labels: tuple[int | float, ...] | None

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, n: int, seed: int) -> Split:
        """``n`` examples drawn without replacement, the same ones for the same seed.

        The drawn examples keep their original order. Returns ``self`` when ``n >= len(self)``.
        """
        if n < 1:
            raise ValueError(f"subset size must be at least 1, got {n}")
        if n >= len(self):
            return self
        return self.rows(sorted(random.Random(seed).sample(range(len(self)), n)))

    def rows(self, indices: Sequence[int]) -> Split:
        """The examples at ``indices``, in that order."""
        labels = None if self.labels is None else tuple(self.labels[i] for i in indices)
        return Split(texts=tuple(self.texts[i] for i in indices), labels=labels)


@dataclass(frozen=True)
class Task:
    """A dataset ready for proxy fine-tuning: train on ``train``, choose on ``search``, report on ``dev``.

    ``search`` is carved out of the loaded training split when a job is prepared
    (:func:`autopeft.tasks.holdout.with_search_split`); it is None for a task as loaded. The three
    splits never share an example (as far as the source files do not repeat one).

    ``label_names`` is set for classification only; label id i means ``label_names[i]``. The
    names are sorted deterministically: numerically when every label is a number ("0", "1",
    "10"), otherwise alphabetically. ``metric`` is the primary metric (a key of
    ``METRIC_GOALS``). ``source`` is what :func:`load_task` accepts to load this task again
    (with the same keyword arguments, when they were needed).
    """

    name: str
    kind: TaskKind
    train: Split
    dev: Split
    label_names: tuple[str, ...]
    metric: str
    source: str
    search: Split | None = None

    @property
    def num_labels(self) -> int:
        """Output width of the model head: classes, 1 for regression, 0 for causal LM."""
        if self.kind == TaskKind.CLASSIFICATION:
            return len(self.label_names)
        return 1 if self.kind == TaskKind.REGRESSION else 0
