"""Tokenized splits as datasets for the Hugging Face Trainer.

The Trainer asks for examples one by one and hands a list of them to the collator. Here an
example is only its row in a :class:`TokenizedSplit`; the collator cuts the padded batch from the
split itself, so padding and labels are exactly the proxy fine-tune's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from autopeft.tasks import TokenizedSplit


@dataclass(frozen=True)
class Row:
    split: TokenizedSplit
    index: int


class RowDataset(Dataset):
    """Every row of a tokenized split."""

    def __init__(self, split: TokenizedSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Row:
        return Row(self.split, index)


def collate_rows(rows: Sequence[Row]) -> dict[str, torch.Tensor]:
    """The padded batch of ``rows`` (all from one split), as :meth:`TokenizedSplit.batch` builds it."""
    return rows[0].split.batch([row.index for row in rows])
