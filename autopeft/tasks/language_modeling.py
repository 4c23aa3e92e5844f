"""Causal-LM tasks: Alpaca instruction data (.json) and plain text (.txt).

Both are scored by the mean dev token loss. Instruction examples are ``(prompt, response)``
pairs built with the Stanford Alpaca prompt template, and only response tokens carry loss.
Plain text is cut into chunks of about ``CHUNK_CHARS`` characters at line boundaries; the
last 10% of the chunks (one contiguous stretch of the text) are dev, so no dev text is seen in
training.
"""

from __future__ import annotations

import json
from pathlib import Path

from autopeft.errors import TaskError
from autopeft.tasks.holdout import HOLDOUT_FRACTION, split_off_dev
from autopeft.tasks.tables import read_utf8
from autopeft.tasks.task import Split

CHUNK_CHARS = 2000

_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
_PROMPT_WITHOUT_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input_text: str) -> str:
    """The Alpaca prompt, ending in ``"### Response:\\n"``; the Input block only for a non-empty input."""
    if input_text.strip():
        return _PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
    return _PROMPT_WITHOUT_INPUT.format(instruction=instruction)


def read_alpaca_splits(path: Path) -> tuple[Split, Split]:
    """(train, dev) from a JSON list of ``{"instruction", "input", "output"}`` records.

    ``input`` may be missing or empty. A seeded random 10% of the records is held out as dev.
    """
    records = _read_json_list(path)
    examples = [_alpaca_example(path, number, record) for number, record in enumerate(records, start=1)]
    train_rows, dev_rows = split_off_dev(len(examples), str(path))
    return (
        Split(texts=tuple(examples[i] for i in train_rows), labels=None),
        Split(texts=tuple(examples[i] for i in dev_rows), labels=None),
    )


def read_plain_text_splits(path: Path) -> tuple[Split, Split]:
    """(train, dev) chunks of a plain-text file; dev is the last 10% of the chunks."""
    chunks = chunk_text(read_utf8(path))
    if len(chunks) < 2:
        raise TaskError(
            f"{path}: {sum(map(len, chunks))} characters of text make fewer than 2 chunks of "
            f"~{CHUNK_CHARS} characters; a language-model task needs enough text for a train and a dev part"
        )
    dev_count = max(1, round(len(chunks) * HOLDOUT_FRACTION))
    return (
        Split(texts=tuple((chunk,) for chunk in chunks[:-dev_count]), labels=None),
        Split(texts=tuple((chunk,) for chunk in chunks[-dev_count:]), labels=None),
    )


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Consecutive chunks of at most ``size`` characters, cut after a newline where possible.

    A single line longer than ``size`` is cut into ``size``-character pieces. Whitespace-only
    chunks are dropped. Joined, the chunks give back the text (less those).
    """
    chunks: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > size:
            chunks.extend([current, line[:size]])
            current, line = "", line[size:]
        if len(current) + len(line) > size:
            chunks.append(current)
            current = ""
        current += line
    chunks.append(current)
    return [chunk for chunk in chunks if chunk.strip()]


def _read_json_list(path: Path) -> list:
    try:
        records = json.loads(read_utf8(path))
    except json.JSONDecodeError as error:
        raise TaskError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(records, list) or not records:
        found = "an empty list" if records == [] else f"a JSON {type(records).__name__}"
        raise TaskError(
            f"{path}: found {found}; expected a JSON list of Alpaca records "
            '{"instruction", "input", "output"} (for labelled examples use .jsonl, .csv or .tsv)'
        )
    return records


def _alpaca_example(path: Path, number: int, record: object) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise TaskError(
            f"{path}: record {number} is a JSON {type(record).__name__}; "
            "expected an object with instruction, input, output"
        )
    for key, required in (("instruction", True), ("input", False), ("output", True)):
        value = record.get(key, None if required else "")
        if not isinstance(value, str) or (required and not value.strip()):
            raise TaskError(
                f"{path}: record {number} has no text in {key!r} (keys: {', '.join(record)}); "
                "expected Alpaca records with non-empty instruction and output"
            )
    return alpaca_prompt(record["instruction"], record.get("input", "")), record["output"]
