"""Split a benchmark's runs over processes (one per core) that append rows to their own CSV files.

Run ``--shard 0/2`` and ``--shard 1/2`` side by side: each measures every second run into
``<results stem>.shard<I>.csv`` and skips what any shard has already measured, so an interrupted
benchmark resumes; the shard that finishes last sees every row and writes the report.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Shard:
    """The ``index``-th of ``count`` processes."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` -> Shard(I, N); SystemExit with one line when it is not that."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise SystemExit(f"--shard must look like I/N (e.g. 0/2), got {text!r}") from None
        if not 0 <= index < count:
            raise SystemExit(f"--shard {text}: I must be in 0..N-1")
        return cls(index, count)

    def owns(self, position: int) -> bool:
        return position % self.count == self.index

    def path(self, results: Path) -> Path:
        return results if self.count == 1 else results.with_name(f"{results.stem}.shard{self.index}{results.suffix}")


def read_rows(results: Path, key: str | Callable[[dict[str, str]], str]) -> dict[str, dict[str, str]]:
    """Rows measured so far by every shard whose file sits next to ``results``, by column ``key``
    (or by ``key(row)``, for results whose runs are named by several columns)."""
    key_of = key if callable(key) else (lambda row: row[key])
    rows: dict[str, dict[str, str]] = {}
    # Not ``{stem}*``: that would also read a sibling table such as ``<stem>.timing.csv``.
    shards = sorted(results.parent.glob(f"{results.stem}.shard*{results.suffix}"))
    for path in [results, *shards] if results.exists() else shards:
        with path.open(newline="") as handle:
            rows.update({key_of(row): row for row in csv.DictReader(handle)})
    return rows


@contextmanager
def row_writer(path: Path, columns: Sequence[str]) -> Iterator[Callable[[dict], None]]:
    """A function appending one row to ``path`` and flushing it (the header is written once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, list(columns))
        if handle.tell() == 0:
            writer.writeheader()

        def write(row: dict) -> None:
            writer.writerow(row)
            handle.flush()

        yield write
