"""The nine GLUE tasks: their file layouts (original GLUE TSVs), hub columns and default metrics.

A folder is recognised by its name (case and punctuation ignored: ``SST-2``, ``sst2``,
``STS-B``, ``stsb`` ...). Metrics follow GLUE: Matthews correlation for CoLA, F1 (of the
positive class, with accuracy also reported) for MRPC and QQP, Pearson (with Spearman) for
STS-B, accuracy elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from autopeft.tasks.task import TaskKind


@dataclass(frozen=True)
class GlueLayout:
    """Where one GLUE task keeps its examples, on disk and on the hub (``nyu-mll/glue``)."""

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    hub_text_columns: tuple[str, ...]
    kind: TaskKind = TaskKind.CLASSIFICATION
    metric: str = "accuracy"
    dev_file: str = "dev.tsv"
    hub_dev_split: str = "validation"
    header: tuple[str, ...] | None = None  # column names of a file without a header row


_PAIR = ("sentence1", "sentence2")

GLUE_LAYOUTS: dict[str, GlueLayout] = {
    "cola": GlueLayout(
        name="CoLA",
        text_columns=("sentence",),
        label_column="label",
        hub_text_columns=("sentence",),
        metric="mcc",
        header=("source", "label", "original_label", "sentence"),
    ),
    "sst2": GlueLayout(name="SST-2", text_columns=("sentence",), label_column="label", hub_text_columns=("sentence",)),
    "mrpc": GlueLayout(
        name="MRPC",
        text_columns=("#1 String", "#2 String"),
        label_column="Quality",
        hub_text_columns=_PAIR,
        metric="f1",
    ),
    "stsb": GlueLayout(
        name="STS-B",
        text_columns=_PAIR,
        label_column="score",
        hub_text_columns=_PAIR,
        kind=TaskKind.REGRESSION,
        metric="pearson",
    ),
    "qqp": GlueLayout(
        name="QQP",
        text_columns=("question1", "question2"),
        label_column="is_duplicate",
        hub_text_columns=("question1", "question2"),
        metric="f1",
    ),
    "mnli": GlueLayout(
        name="MNLI",
        text_columns=_PAIR,
        label_column="gold_label",
        hub_text_columns=("premise", "hypothesis"),
        dev_file="dev_matched.tsv",
        hub_dev_split="validation_matched",
    ),
    "qnli": GlueLayout(
        name="QNLI",
        text_columns=("question", "sentence"),
        label_column="label",
        hub_text_columns=("question", "sentence"),
    ),
    "rte": GlueLayout(name="RTE", text_columns=_PAIR, label_column="label", hub_text_columns=_PAIR),
    "wnli": GlueLayout(name="WNLI", text_columns=_PAIR, label_column="label", hub_text_columns=_PAIR),
}

GLUE_HUB_NAMES = ("nyu-mll/glue", "glue")


def glue_layout_for_folder(folder: Path) -> GlueLayout | None:
    """The layout of a GLUE folder, or None when the name is no GLUE task or files are missing."""
    layout = GLUE_LAYOUTS.get(_task_key(folder.name))
    if layout and (folder / "train.tsv").is_file() and (folder / layout.dev_file).is_file():
        return layout
    return None


def glue_layout_for_hub(dataset: str, config: str | None) -> GlueLayout | None:
    """The layout of ``nyu-mll/glue:CONFIG``, or None for any other hub dataset."""
    if dataset.lower() not in GLUE_HUB_NAMES or config is None:
        return None
    return GLUE_LAYOUTS.get(_task_key(config))


def _task_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())
