"""The knobs of a full-fidelity run (kept apart from the Trainer so the CLI imports it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass

from autopeft.errors import AutopeftError
from autopeft.trials import RESCUE_FACTORS, lr_rescues_error


@dataclass(frozen=True)
class TrainingOptions:
    """How long and how hard to train.

    Attributes:
        epochs: passes over the training examples (dev is scored after each).
        learning_rate: AdamW peak learning rate, warmed up linearly over ``warmup`` of the
            steps, then decayed linearly to zero.
        batch_size: examples per step (training and scoring).
        max_length: tokens per example after truncation.
        train_examples: a seeded subset of the training split; None trains on all of it.
        seed: seeds the head and module initialisation, the subset and the data order.
        warmup: fraction of the steps spent warming up.
        lr_rescues: restarts allowed from a fresh initialisation at the next rate of
            :data:`~autopeft.trials.RESCUE_FACTORS` when the training loss stalls at the
            constant-prediction level, collapses back toward it, or turns non-finite (checked
            halfway and at the end, as the proxy checks); 0 trains at ``learning_rate`` come what may.
    """

    epochs: float = 3.0
    learning_rate: float = 1e-3
    batch_size: int = 16
    max_length: int = 128
    train_examples: int | None = None
    seed: int = 0
    warmup: float = 0.1
    lr_rescues: int = len(RESCUE_FACTORS)

    def check(self) -> None:
        """AutopeftError naming the first option that cannot run."""
        for name in ("epochs", "learning_rate", "batch_size", "max_length"):
            if getattr(self, name) <= 0:
                raise AutopeftError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.train_examples is not None and self.train_examples < 1:
            raise AutopeftError(f"--train-examples must be at least 1, got {self.train_examples}")
        if not 0 <= self.warmup < 1:
            raise AutopeftError(f"warmup must be a fraction of the steps in [0, 1), got {self.warmup}")
        if error := lr_rescues_error(self.lr_rescues):
            raise AutopeftError(error)
