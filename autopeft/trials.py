"""What travels between the scheduler, the workers and the store for one trial."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from autopeft.options import option

RESCUE_FACTORS = (0.3, 3.0)
"""Learning rates of the restarts after a stall, as factors of the run's rate: lower first (large
structures collapse to a constant at a rate that suits small ones), then higher (small structures
on low layers may not move in a short run at that rate). The proxy and ``autopeft train`` use them."""
RESCUES_HELP = ", then ".join(f"{factor:g}x" for factor in RESCUE_FACTORS)


def rescue_rates(learning_rate: float, rescues: int) -> list[float]:
    """The rates a run tries in order: ``learning_rate``, then its first ``rescues`` restarts."""
    return [learning_rate * factor for factor in (1.0, *RESCUE_FACTORS[:rescues])]


def lr_rescues_error(count: int) -> str | None:
    """The one-line error for a number of restarts ``RESCUE_FACTORS`` cannot give, or None."""
    if 0 <= count <= len(RESCUE_FACTORS):
        return None
    return f"--lr-rescues must be between 0 and {len(RESCUE_FACTORS)}, got {count}"


class TrialState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class TrialRole(StrEnum):
    """Why a trial ran.

    ``explore``: proposed by the optimizer (or promoted); ``default``: a structure a practitioner
    would try first, run at the start of the search; ``replicate``: the same structure and rung
    as its origin trial with another training seed, confirming a front member; ``validation``:
    its origin's structure retrained at a higher fidelity and scored on dev (never searched on).
    """

    EXPLORE = "explore"
    DEFAULT = "default"
    REPLICATE = "replicate"
    VALIDATION = "validation"


@dataclass(frozen=True)
class Fidelity:
    """How much a proxy fine-tune costs.

    Attributes:
        train_examples: training examples drawn once per job (the same subset for every trial).
        steps: optimizer steps.
        batch_size: examples per step.
        max_length: tokens per example after truncation.
        learning_rate: AdamW peak learning rate (linear warm-up over 10% of steps, then decay).
        eval_examples: examples of the scored split (the search split while searching) drawn
            once per job; None scores the whole split.
        lr_rescues: restarts allowed (at most one per factor of :data:`RESCUE_FACTORS`) at other
            learning rates when the training loss stalls at the constant-prediction level,
            collapses back toward it or turns non-finite; 0 trains at ``learning_rate`` come what may.
    """

    train_examples: int = option(2400, help="Proxy fine-tune: training subset size.")
    steps: int = option(150, help="Proxy fine-tune: optimizer steps.")
    batch_size: int = option(16, help="Proxy fine-tune: batch size.")
    max_length: int = option(64, help="Proxy fine-tune: tokens per example.")
    learning_rate: float = option(1e-3, help="Proxy fine-tune: AdamW learning rate.")
    eval_examples: int | None = option(None, help="Search-split examples scored (default: all).", ge=1)
    lr_rescues: int = option(len(RESCUE_FACTORS), ge=0, le=len(RESCUE_FACTORS),
                             help=f"Restarts at {RESCUES_HELP} the rate when a proxy's loss stalls.")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fidelity:
        return cls(**data)


@dataclass(frozen=True)
class TrialRequest:
    """One proxy fine-tune for a worker: a structure, a seed and a fidelity (rung ``rung``).

    ``split`` is the split it is scored on: ``search`` while searching, ``dev`` for validation.
    ``expected_params`` is the exact trainable count the space predicted: a built model that
    trains another number fails the trial (the structure is not what was searched).
    """

    trial_id: int
    number: int
    structure: dict[str, Any]
    seed: int
    fidelity: Fidelity
    rung: int = 0
    split: str = "search"
    expected_params: int | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """What a worker measured.

    Attributes:
        metrics: metrics on the request's split (accuracy, f1, ... or loss, perplexity) plus
            ``train_loss_first`` and ``train_loss_last`` (mean loss over the first / last 10%
            of steps of the kept run), ``learning_rate`` (the one it trained at),
            ``lr_rescues`` (restarts at a lower rate), and for classification
            ``predicted_classes`` (distinct classes predicted; 1 = a constant predictor).
        trainable_params: trainable parameters counted on the built model, head included.
        peak_memory_bytes: peak resident memory of the worker process during the trial (CPU),
            or peak allocated accelerator memory (GPU).
        wall_time_s: seconds from receiving the request to the result, injection included.
        step_time_s: mean seconds per optimizer step.
        error: failure reason (``"nan loss at step 12"``, ``"out of memory: ..."``) when failed.
        timings: seconds spent per phase: ``data``, ``inject``, ``train``, ``evaluate``, ``remove``.
        lost_worker: the worker process died; the scheduler retries such trials elsewhere.
    """

    trial_id: int
    state: TrialState
    worker: str
    metrics: dict[str, float] = field(default_factory=dict)
    trainable_params: int | None = None
    peak_memory_bytes: int | None = None
    wall_time_s: float | None = None
    step_time_s: float | None = None
    error: str | None = None
    timings: dict[str, float] | None = None
    lost_worker: bool = False
