"""From raw labelled examples (label as written in the file) to splits with label ids or floats."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autopeft.errors import TaskError
from autopeft.tasks.task import Split, TaskKind


@dataclass(frozen=True)
class RawExample:
    """One example as read: its text fields, its label as text, and where it came from.

    ``source`` is the file (or dataset split) and ``position`` the row in it (``"line 12"``),
    both for error messages.
    """

    texts: tuple[str, ...]
    label: str
    source: str
    position: str

    @property
    def origin(self) -> str:
        return f"{self.source}: {self.position}"


def infer_kind(labels: Sequence[str]) -> TaskKind:
    """Regression when every label is a finite number and one of them is not an integer."""
    numbers = [_as_number(label) for label in labels]
    if numbers and all(n is not None for n in numbers) and any(not n.is_integer() for n in numbers):
        return TaskKind.REGRESSION
    return TaskKind.CLASSIFICATION


def encode_splits(
    train: Sequence[RawExample], dev: Sequence[RawExample], kind: TaskKind
) -> tuple[Split, Split, tuple[str, ...]]:
    """Turn raw train and dev examples into splits; returns (train, dev, label_names).

    Classification label names come from train only (sorted numerically when all are numbers,
    else alphabetically); a dev label unseen in train is an error, as is a single class.
    """
    if kind == TaskKind.REGRESSION:
        return _regression_split(train), _regression_split(dev), ()
    label_names = _label_names(train)
    return _classification_split(train, label_names), _classification_split(dev, label_names), label_names


def _label_names(train: Sequence[RawExample]) -> tuple[str, ...]:
    names = {_canonical_label(example) for example in train}
    if len(names) < 2:
        raise TaskError(
            f"{train[0].source}: every training label is {next(iter(names))!r}; "
            "classification needs at least two classes"
        )
    numbers = {name: _as_number(name) for name in names}
    if all(n is not None for n in numbers.values()):
        return tuple(sorted(names, key=lambda name: numbers[name]))
    return tuple(sorted(names))


def _classification_split(examples: Sequence[RawExample], label_names: tuple[str, ...]) -> Split:
    ids = {name: i for i, name in enumerate(label_names)}
    labels = []
    for example in examples:
        label = _canonical_label(example)
        if label not in ids:
            raise TaskError(
                f"{example.origin}: label {label!r} does not occur in the training data "
                f"(training labels: {', '.join(label_names)})"
            )
        labels.append(ids[label])
    return Split(texts=tuple(e.texts for e in examples), labels=tuple(labels))


def _regression_split(examples: Sequence[RawExample]) -> Split:
    labels = []
    for example in examples:
        value = _as_number(example.label)
        if value is None:
            raise TaskError(
                f"{example.origin}: label {example.label!r} is not a finite number; regression needs numeric labels"
            )
        labels.append(value)
    return Split(texts=tuple(e.texts for e in examples), labels=tuple(labels))


def _canonical_label(example: RawExample) -> str:
    """The label text, with integral numbers written one way ("1.0" and "1" are one class)."""
    label = example.label.strip()
    if not label:
        raise TaskError(f"{example.origin}: empty label")
    number = _as_number(label)
    if number is not None and number.is_integer():
        return str(int(number))
    return label


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
