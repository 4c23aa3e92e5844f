"""evaluate_predictions against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autopeft.tasks import METRIC_GOALS, TaskKind, evaluate_predictions
from autopeft.tasks.metrics import METRICS_BY_KIND

# TP = rows 0, 3; FN = row 2; FP = row 4; TN = rows 1, 5.
BINARY_LABELS = [1, 0, 1, 1, 0, 0]
BINARY_PREDICTIONS = [1, 0, 0, 1, 1, 0]


def test_binary_classification():
    scores = evaluate_predictions(TaskKind.CLASSIFICATION, BINARY_PREDICTIONS, BINARY_LABELS)
    # precision = recall = 2/3, so F1 = 2/3; MCC = (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3.
    assert scores == pytest.approx({"accuracy": 4 / 6, "f1": 2 / 3, "mcc": 1 / 3})


def test_binary_f1_is_the_f1_of_class_one():
    # Class 1: TP 1, FP 0, FN 1 -> F1 2/3. Class 0 would give TP 2, FP 1, FN 0 -> F1 0.8.
    scores = evaluate_predictions("classification", [0, 0, 1], [0, 1, 1])
    assert scores["f1"] == pytest.approx(2 / 3)


def test_logits_are_reduced_by_argmax():
    logits = np.array([[-1.0, 2.0], [3.0, 0.5], [0.2, 0.1], [0.0, 4.0], [-2.0, -1.0], [1.0, -1.0]])
    assert evaluate_predictions("classification", logits, BINARY_LABELS) == evaluate_predictions(
        "classification", BINARY_PREDICTIONS, BINARY_LABELS
    )


def test_multiclass_f1_is_macro():
    scores = evaluate_predictions("classification", [0, 2, 2, 2], [0, 1, 2, 2])
    # Per class F1: 0 -> 1.0, 1 -> 0.0 (never predicted), 2 -> P 2/3, R 1 -> 0.8.
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["f1"] == pytest.approx((1.0 + 0.0 + 0.8) / 3)


def test_constant_classifier_gets_zero_mcc_and_f1():
    scores = evaluate_predictions("classification", [0, 0, 0, 0], [0, 1, 0, 1])
    assert scores == {"accuracy": 0.5, "f1": 0.0, "mcc": 0.0}


def test_regression():
    # Deviations from the means (2, 2): predictions -1, 0, 1 and labels -1, 1, 0:
    # covariance sum 1, variance sums 2 and 2 -> r = 0.5; ranks equal the values -> rho = 0.5.
    scores = evaluate_predictions(TaskKind.REGRESSION, [1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    assert scores == pytest.approx({"pearson": 0.5, "spearman": 0.5, "mse": 2 / 3})


def test_spearman_sees_monotonic_but_pearson_not_linear():
    scores = evaluate_predictions("regression", np.array([[1.0], [2.0], [3.0], [4.0]]), [1, 4, 9, 16])
    assert scores["spearman"] == pytest.approx(1.0)
    assert 0.9 < scores["pearson"] < 1.0


def test_constant_regression_predictions_give_zero_correlation():
    scores = evaluate_predictions("regression", [2.0, 2.0, 2.0], [1.0, 2.0, 4.0])
    # mse = (1 + 0 + 4) / 3
    assert scores == pytest.approx({"pearson": 0.0, "spearman": 0.0, "mse": 5 / 3})
    assert evaluate_predictions("regression", [1.0], [3.0]) == {"pearson": 0.0, "spearman": 0.0, "mse": 4.0}


def test_diverged_regression_gets_the_worst_defined_scores():
    scores = evaluate_predictions("regression", [1.0, math.nan, 2.0], [1.0, 2.0, 3.0])
    assert scores == {"pearson": 0.0, "spearman": 0.0, "mse": math.inf}


def test_causal_lm_perplexity_is_exp_of_the_mean_token_loss():
    assert evaluate_predictions("causal_lm", None, None, loss=math.log(4.0)) == pytest.approx(
        {"loss": math.log(4.0), "perplexity": 4.0}
    )
    assert evaluate_predictions("causal_lm", None, None, loss=1000.0)["perplexity"] == math.inf
    assert evaluate_predictions("causal_lm", None, None, loss=math.nan) == {"loss": math.inf, "perplexity": math.inf}
    with pytest.raises(ValueError, match="loss"):
        evaluate_predictions("causal_lm", None, None)


def test_mismatched_or_empty_inputs_are_programming_errors():
    with pytest.raises(ValueError, match="equally many"):
        evaluate_predictions("classification", [0, 1], [0, 1, 1])
    with pytest.raises(ValueError):
        evaluate_predictions("regression", [], [])


def test_every_reported_metric_has_a_goal():
    assert METRIC_GOALS == {
        "accuracy": "max",
        "f1": "max",
        "mcc": "max",
        "pearson": "max",
        "spearman": "max",
        "mse": "min",
        "loss": "min",
        "perplexity": "min",
    }
    reported = {
        TaskKind.CLASSIFICATION: evaluate_predictions("classification", [0, 1], [0, 1]),
        TaskKind.REGRESSION: evaluate_predictions("regression", [0.0, 1.0], [0.0, 1.0]),
        TaskKind.CAUSAL_LM: evaluate_predictions("causal_lm", None, None, loss=1.0),
    }
    for kind, scores in reported.items():
        assert tuple(scores) == METRICS_BY_KIND[kind]
        assert set(scores) <= set(METRIC_GOALS)
