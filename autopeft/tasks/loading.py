"""``load_task``: from the string a user typed to a Task with separate train and dev splits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autopeft.errors import TaskError
from autopeft.tasks.glue import GlueLayout, glue_layout_for_folder
from autopeft.tasks.holdout import split_off_dev
from autopeft.tasks.hub import looks_like_hub_id, read_hub_examples
from autopeft.tasks.labels import RawExample, encode_splits, infer_kind
from autopeft.tasks.language_modeling import read_alpaca_splits, read_plain_text_splits
from autopeft.tasks.metrics import METRICS_BY_KIND
from autopeft.tasks.tables import TABLE_SUFFIXES, examples_from_table, infer_columns, read_table
from autopeft.tasks.task import Task, TaskKind

DEMO_FOLDER = Path(__file__).parent / "demo"

_DEV_STEMS = ("dev", "validation")


def load_task(
    source: str,
    *,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    metric: str | None = None,
    kind: TaskKind | None = None,
) -> Task:
    """Load a task; ``source`` is resolved in this order:

    1. ``"demo"``: the small binary task shipped in ``autopeft/tasks/demo``.
    2. A GLUE folder named after its task (``SST-2``, ``RTE``, ``MNLI`` ...) holding the
       original GLUE ``train.tsv`` and ``dev.tsv`` (``dev_matched.tsv`` for MNLI), unless
       columns are given. GLUE's metric for the task is the default.
    3. A folder with ``train`` and ``dev`` (or ``validation``) files in .csv, .tsv or .jsonl,
       or one such file, of which a seeded random 10% is held out as dev (10% of each class
       for classification). Columns: ``text_columns`` (1, or 2 for pairs) and
       ``label_column``, or the conventional ``sentence``/``text`` or
       ``sentence1``+``sentence2``, and ``label``. Numeric labels that are not all integers
       make a regression task, anything else classification; ``kind`` overrides.
    4. A ``.json`` list of Alpaca records (causal LM, seeded 10% dev), or a ``.txt`` file
       (causal LM on ~2,000-character chunks, the last 10% of them dev).
    5. A Hugging Face dataset ``NAME`` or ``NAME:CONFIG`` (splits ``train`` and
       ``validation``), failing within seconds when the hub is unreachable.

    Default metrics: accuracy (classification), pearson (regression), loss (causal LM).
    Every problem with the source raises a one-line TaskError.
    """
    if isinstance(text_columns, str):
        text_columns = (text_columns,)
    kind = _checked_kind(kind)
    if source == "demo":
        return _table_folder_task(DEMO_FOLDER, "demo", "demo", text_columns, label_column, metric, kind)
    path = Path(source).expanduser()
    if path.is_dir():
        layout = glue_layout_for_folder(path) if text_columns is None and label_column is None else None
        if layout:
            return _glue_folder_task(path, layout, metric, kind)
        return _table_folder_task(path, path.name, str(path.resolve()), text_columns, label_column, metric, kind)
    if path.is_file():
        return _file_task(path, text_columns, label_column, metric, kind)
    if _names_a_local_path(source, path):
        raise TaskError(f"task folder not found: {source} (no such file or folder)")
    train, dev, layout = read_hub_examples(source, text_columns, label_column)
    return _labelled_task(source, source, train, dev, metric, kind, layout)


def _names_a_local_path(source: str, path: Path) -> bool:
    """Whether a source that does not exist was meant as a path, so the hub is not asked.

    Hub ids look like ``name`` or ``owner/name[:config]``; anything else, a data-file suffix,
    or an ``owner`` that is an existing local folder (``data/mytask``) means a path.
    """
    if path.suffix.lower() in (*TABLE_SUFFIXES, ".json", ".txt") or not looks_like_hub_id(source):
        return True
    return "/" in source and path.parent.is_dir()


def _file_task(
    path: Path, text_columns: Sequence[str] | None, label_column: str | None, metric: str | None, kind: TaskKind | None
) -> Task:
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _table_file_task(path, text_columns, label_column, metric, kind)
    if suffix in (".json", ".txt"):
        if text_columns is not None or label_column is not None:
            raise TaskError(
                f"{path}: a {suffix} file is a causal-LM task; --text-columns and --label-column do not apply"
            )
        return _language_model_task(path, metric, kind)
    raise TaskError(
        f"{path}: unsupported file type {suffix or '(none)'!r}; expected .csv, .tsv or .jsonl (labelled examples), "
        ".json (Alpaca instructions) or .txt (plain text)"
    )


def _table_file_task(
    path: Path, text_columns: Sequence[str] | None, label_column: str | None, metric: str | None, kind: TaskKind | None
) -> Task:
    """One labelled file: a seeded 10% is held out as dev, per class for classification."""
    table = read_table(path)
    text_columns, label_column = infer_columns(table.columns, str(path), text_columns, label_column)
    examples = examples_from_table(table, text_columns, label_column)
    kind = kind or infer_kind([e.label for e in examples])
    strata = [e.label.strip() for e in examples] if kind == TaskKind.CLASSIFICATION else None
    train_rows, dev_rows = split_off_dev(len(examples), str(path), strata)
    train, dev = [examples[i] for i in train_rows], [examples[i] for i in dev_rows]
    return _labelled_task(path.name, str(path.resolve()), train, dev, metric, kind)


def _language_model_task(path: Path, metric: str | None, kind: TaskKind | None) -> Task:
    if kind not in (None, TaskKind.CAUSAL_LM):
        raise TaskError(
            f"{path}: a {path.suffix} file is a causal-LM task, not {kind}; "
            "use .csv, .tsv or .jsonl for labelled examples"
        )
    train, dev = read_alpaca_splits(path) if path.suffix.lower() == ".json" else read_plain_text_splits(path)
    return Task(
        name=path.name,
        kind=TaskKind.CAUSAL_LM,
        train=train,
        dev=dev,
        label_names=(),
        metric=_checked_metric(metric or "loss", TaskKind.CAUSAL_LM, str(path)),
        source=str(path.resolve()),
    )


def _glue_folder_task(folder: Path, layout: GlueLayout, metric: str | None, kind: TaskKind | None) -> Task:
    def examples(file_name: str) -> list[RawExample]:
        table = read_table(folder / file_name, column_names=layout.header)
        return examples_from_table(table, layout.text_columns, layout.label_column)

    return _labelled_task(
        layout.name, str(folder.resolve()), examples("train.tsv"), examples(layout.dev_file), metric, kind, layout
    )


def _table_folder_task(
    folder: Path,
    name: str,
    source: str,
    text_columns: Sequence[str] | None,
    label_column: str | None,
    metric: str | None,
    kind: TaskKind | None,
) -> Task:
    train_table = read_table(_split_file(folder, ("train",)))
    dev_table = read_table(_split_file(folder, _DEV_STEMS))
    text_columns, label_column = infer_columns(train_table.columns, str(train_table.path), text_columns, label_column)
    train = examples_from_table(train_table, text_columns, label_column)
    dev = examples_from_table(dev_table, text_columns, label_column)
    return _labelled_task(name, source, train, dev, metric, kind)


def _split_file(folder: Path, stems: Sequence[str]) -> Path:
    """The one ``{stem}.csv|.tsv|.jsonl`` file in ``folder`` for a split (e.g. train)."""
    found = [
        folder / f"{stem}{suffix}"
        for stem in stems
        for suffix in TABLE_SUFFIXES
        if (folder / f"{stem}{suffix}").is_file()
    ]
    wanted = " or ".join(f"{stem}.csv/.tsv/.jsonl" for stem in stems)
    if not found:
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise TaskError(f"{folder}: no {wanted} file (found: {present}); a task folder needs train and dev files")
    if len(found) > 1:
        raise TaskError(
            f"{folder}: {' and '.join(p.name for p in found)} both hold the split; keep exactly one {wanted}"
        )
    return found[0]


def _labelled_task(
    name: str,
    source: str,
    train: Sequence[RawExample],
    dev: Sequence[RawExample],
    metric: str | None,
    kind: TaskKind | None,
    layout: GlueLayout | None = None,
) -> Task:
    """A classification or regression task; the kind is inferred from all labels unless given."""
    if kind == TaskKind.CAUSAL_LM:
        raise TaskError(
            f"{source}: labelled examples cannot make a causal_lm task; give a .json Alpaca file or a .txt file"
        )
    kind = kind or (layout.kind if layout else infer_kind([e.label for e in (*train, *dev)]))
    train_split, dev_split, label_names = encode_splits(train, dev, kind)
    default_metric = layout.metric if layout and layout.kind == kind else METRICS_BY_KIND[kind][0]
    return Task(
        name=name,
        kind=kind,
        train=train_split,
        dev=dev_split,
        label_names=label_names,
        metric=_checked_metric(metric or default_metric, kind, source),
        source=source,
    )


def _checked_kind(kind: TaskKind | str | None) -> TaskKind | None:
    try:
        return TaskKind(kind) if kind is not None else None
    except ValueError:
        raise TaskError(f"unknown task kind {kind!r}; expected one of {', '.join(TaskKind)}") from None


def _checked_metric(metric: str, kind: TaskKind, source: str) -> str:
    if metric not in METRICS_BY_KIND[kind]:
        raise TaskError(
            f"{source}: metric {metric!r} does not apply to a {kind} task; "
            f"choose one of {', '.join(METRICS_BY_KIND[kind])}"
        )
    return metric
