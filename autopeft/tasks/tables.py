"""Reading labelled examples from CSV, TSV and JSONL files.

TSV files are read with ``csv.QUOTE_NONE``: a quote is literal text, as in GLUE and most TSV
writers. CSV files use standard double-quote quoting. Files are UTF-8; a leading byte-order mark
is dropped (GLUE's MRPC header has one). Blank lines are skipped; any other row whose field
count differs from the header's is an error.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autopeft.errors import TaskError
from autopeft.tasks.labels import RawExample

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")


@dataclass(frozen=True)
class Table:
    """A file's column names and its rows, each with its position (``"line 7"``) in the file."""

    path: Path
    columns: tuple[str, ...]
    rows: tuple[tuple[str, dict[str, object]], ...]


def read_table(path: Path, column_names: Sequence[str] | None = None) -> Table:
    """Read a .csv, .tsv or .jsonl file; ``column_names`` names the fields of a header-less TSV/CSV."""
    text = read_utf8(path)
    if not text.strip():
        raise TaskError(f"{path}: empty file; expected a header row and one example per row")
    if path.suffix.lower() == ".jsonl":
        table = _parse_jsonl(path, text)
    else:
        table = _parse_delimited(path, text, column_names)
    if not table.rows:
        raise TaskError(f"{path}: no examples, only a header ({', '.join(table.columns)})")
    return table


def infer_columns(
    columns: Sequence[str], where: str, text_columns: Sequence[str] | None, label_column: str | None
) -> tuple[tuple[str, ...], str]:
    """The text and label columns: the given ones, or the unambiguous conventional names.

    Conventions: ``sentence1`` + ``sentence2`` (a pair) or one of ``sentence`` / ``text``, and
    ``label``. Anything else must be named by the caller. ``where`` names the file for errors.
    """
    present = set(columns)
    if text_columns is None:
        if {"sentence1", "sentence2"} <= present:
            text_columns = ("sentence1", "sentence2")
        elif len(present & {"sentence", "text"}) == 1:
            text_columns = tuple(present & {"sentence", "text"})
        else:
            raise TaskError(
                f"{where}: cannot tell which columns hold the text (columns: {', '.join(columns)}); "
                "pass --text-columns (one column, or two for sentence pairs)"
            )
    if label_column is None:
        if "label" not in present:
            raise TaskError(
                f"{where}: cannot tell which column holds the label (columns: {', '.join(columns)}); "
                "pass --label-column"
            )
        label_column = "label"
    return tuple(text_columns), label_column


def check_columns(columns: Sequence[str], where: str, text_columns: Sequence[str], label_column: str) -> None:
    """Raise TaskError unless there are one or two text columns and every named column exists."""
    if len(text_columns) not in (1, 2):
        raise TaskError(
            f"{where}: {len(text_columns)} text columns given ({', '.join(text_columns)}); "
            "expected one, or two for sentence pairs"
        )
    for column, option in [*((c, "--text-columns") for c in text_columns), (label_column, "--label-column")]:
        if column not in columns:
            raise TaskError(f"{where}: no column {column!r} (columns: {', '.join(columns)}); pass {option}")


def examples_from_table(table: Table, text_columns: Sequence[str], label_column: str) -> list[RawExample]:
    """One RawExample per row, taking the text fields and the label from the named columns."""
    source = str(table.path)
    check_columns(table.columns, source, text_columns, label_column)
    examples = []
    for position, record in table.rows:
        where = f"{source}: {position}"
        examples.append(
            RawExample(
                texts=tuple(text_value(record.get(c), where, c).strip() for c in text_columns),
                label=text_value(record.get(label_column), where, label_column),
                source=source,
                position=position,
            )
        )
    return examples


def text_value(value: object, where: str, column: str) -> str:
    """A cell as text; a missing (null) cell or a JSON list/object is a TaskError."""
    if value is None:
        raise TaskError(f"{where} has no value for column {column!r}")
    if isinstance(value, (dict, list)):
        raise TaskError(f"{where}: column {column!r} holds a JSON {type(value).__name__}; expected text or a number")
    return str(value)


def read_utf8(path: Path) -> str:
    """The file's text; a byte-order mark is dropped, and bytes that are not UTF-8 are a TaskError."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TaskError(f"{path}: line {line} is not UTF-8 text ({error.reason}); save the file as UTF-8") from None


def _parse_delimited(path: Path, text: str, column_names: Sequence[str] | None) -> Table:
    tsv = path.suffix.lower() == ".tsv"
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter="\t" if tsv else ",",
        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
    )
    rows: list[tuple[str, dict[str, object]]] = []
    columns = tuple(column_names) if column_names is not None else None
    try:
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if columns is None:
                columns = _header(path, fields)
                continue
            if len(fields) != len(columns):
                raise TaskError(
                    f"{path}: line {reader.line_num} has {len(fields)} fields, "
                    f"expected {len(columns)} ({', '.join(columns)})"
                )
            rows.append((f"line {reader.line_num}", dict(zip(columns, fields, strict=True))))
    except csv.Error as error:
        raise TaskError(f"{path}: line {reader.line_num} cannot be parsed ({error})") from None
    if columns is None:
        raise TaskError(f"{path}: no header row; expected column names on the first line")
    return Table(path=path, columns=columns, rows=tuple(rows))


def _header(path: Path, fields: list[str]) -> tuple[str, ...]:
    columns = tuple(field.strip() for field in fields)
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise TaskError(f"{path}: the header names column {duplicates[0]!r} twice; column names must be unique")
    return columns


def _parse_jsonl(path: Path, text: str) -> Table:
    columns: dict[str, None] = {}
    rows: list[tuple[str, dict[str, object]]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise TaskError(
                f"{path}: line {number} is not valid JSON ({error.msg}); expected one JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise TaskError(
                f"{path}: line {number} is a JSON {type(record).__name__}; expected one JSON object per line"
            )
        columns.update(dict.fromkeys(record))
        rows.append((f"line {number}", record))
    return Table(path=path, columns=tuple(columns), rows=tuple(rows))
