"""Task metrics: what a trial's dev predictions score, and which direction is better.

Undefined values are replaced by defined ones so that every trial gets a comparable number:
a correlation is 0.0 when it is undefined (constant predictions or labels, fewer than two
examples, or non-finite predictions from a diverged run), and ``mse`` is ``inf`` when a
prediction is not finite. A NaN language-model loss counts as ``inf``, and so does a perplexity
that overflows a float.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, mean_squared_error

from autopeft.tasks.task import TaskKind

METRIC_GOALS: dict[str, Literal["max", "min"]] = {
    "accuracy": "max",
    "f1": "max",
    "mcc": "max",
    "pearson": "max",
    "spearman": "max",
    "mse": "min",
    "loss": "min",
    "perplexity": "min",
}

METRICS_BY_KIND: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.CLASSIFICATION: ("accuracy", "f1", "mcc"),
    TaskKind.REGRESSION: ("pearson", "spearman", "mse"),
    TaskKind.CAUSAL_LM: ("loss", "perplexity"),
}


def evaluate_predictions(
    kind: TaskKind | str,
    predictions: Sequence | np.ndarray | None,
    labels: Sequence | np.ndarray | None,
    *,
    loss: float | None = None,
) -> dict[str, float]:
    """Score dev predictions; the keys are ``METRICS_BY_KIND[kind]``.

    - classification: ``predictions`` are class ids, shape (N,), or class scores/logits,
      shape (N, C), reduced by argmax; ``labels`` are class ids, shape (N,). ``f1`` is the F1
      of class 1 when the task is binary (two score columns, or only ids 0 and 1 seen),
      otherwise the macro average over the classes seen.
    - regression: ``predictions`` and ``labels`` are floats, shape (N,) (or (N, 1)).
    - causal_lm: ``predictions`` and ``labels`` are ignored (pass None); ``loss`` is the mean
      token cross-entropy over the dev set in nats, and ``perplexity`` is ``exp(loss)``.
    """
    kind = TaskKind(kind)
    if kind == TaskKind.CAUSAL_LM:
        return _language_model_metrics(loss)
    predicted = np.asarray(predictions)
    expected = np.asarray(labels)
    if len(predicted) != len(expected) or len(expected) == 0:
        raise ValueError(f"need equally many predictions and labels, got {len(predicted)} and {len(expected)}")
    if kind == TaskKind.CLASSIFICATION:
        return _classification_metrics(predicted, expected)
    return _regression_metrics(predicted.reshape(-1).astype(float), expected.reshape(-1).astype(float))


def _classification_metrics(predicted: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    binary = predicted.shape[-1] == 2 if predicted.ndim == 2 else None
    if predicted.ndim == 2:
        predicted = predicted.argmax(axis=1)
    predicted = predicted.astype(int)
    expected = expected.astype(int)
    if binary is None:
        binary = set(np.unique(np.concatenate([predicted, expected]))) <= {0, 1}
    f1 = (
        f1_score(expected, predicted, pos_label=1, average="binary", zero_division=0.0)
        if binary
        else f1_score(expected, predicted, average="macro", zero_division=0.0)
    )
    return {
        "accuracy": float(accuracy_score(expected, predicted)),
        "f1": float(f1),
        "mcc": float(matthews_corrcoef(expected, predicted)),
    }


def _regression_metrics(predicted: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    if not np.all(np.isfinite(predicted)):
        return {"pearson": 0.0, "spearman": 0.0, "mse": math.inf}
    return {
        "pearson": _defined_correlation(pearsonr, predicted, expected),
        "spearman": _defined_correlation(spearmanr, predicted, expected),
        "mse": float(mean_squared_error(expected, predicted)),
    }


def _defined_correlation(correlation, predicted: np.ndarray, expected: np.ndarray) -> float:
    """The correlation statistic, or 0.0 where it is undefined (no variance, < 2 points)."""
    if len(predicted) < 2 or np.ptp(predicted) == 0 or np.ptp(expected) == 0:
        return 0.0
    value = float(correlation(predicted, expected).statistic)
    return value if math.isfinite(value) else 0.0


def _language_model_metrics(loss: float | None) -> dict[str, float]:
    if loss is None:
        raise ValueError("causal_lm metrics need the mean dev token loss (loss=...)")
    if math.isnan(loss):
        return {"loss": math.inf, "perplexity": math.inf}
    try:
        perplexity = math.exp(loss)
    except OverflowError:
        perplexity = math.inf
    return {"loss": float(loss), "perplexity": perplexity}


def constant_prediction_loss(kind: TaskKind | str, labels: Sequence | None) -> float | None:
    """The training loss of the best constant prediction; a run stuck at it learned nothing.

    Classification: the entropy of the label distribution (nats, what cross-entropy reaches by
    predicting the class frequencies everywhere). Regression: the label variance (MSE of the
    mean). Causal LM has no such level: None.
    """
    kind = TaskKind(kind)
    if kind is TaskKind.CAUSAL_LM or not labels:
        return None
    values = np.asarray(labels)
    if kind is TaskKind.REGRESSION:
        return float(values.astype(float).var())
    frequencies = np.unique(values, return_counts=True)[1] / len(values)
    return float(-(frequencies * np.log(frequencies)).sum())
