"""SQLAlchemy 2 tables of the trial store. Alembic migrations in ``storage/`` create them."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def structure_digest(structure: dict[str, Any]) -> str:
    """128 bits of SHA-256 of the structure's canonical JSON (keys sorted): equal structures, equal
    digests, as :func:`autopeft.objectives.structure_key` compares them. Migration 0006 computes
    the same for trials stored before it; never change one without the other.

    The structure goes through JSON first, as the store keeps it (integer keys become strings)."""
    canonical = json.dumps(json.loads(json.dumps(structure)), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Job(Base):
    """One search: its spec (model, task, space, optimizer, objectives, fidelity), budget and state."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]]
    budget_trials: Mapped[int] = mapped_column(Integer)
    max_time_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    driver: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    """Wall-clock seconds its drivers have run the job, renewed with each heartbeat."""

    trials: Mapped[list[Trial]] = relationship(back_populates="job", cascade="all, delete-orphan")


class Trial(Base):
    """One proxy fine-tune of one structure; ``number`` counts from 0 within its job.

    ``split`` is what it was scored on (``search``; ``dev`` for validation runs and for trials
    stored before searches had a search split). ``role`` says why it ran (:class:`TrialRole`),
    ``origin_id`` is the trial it replicates or validates, ``label`` names a practitioner default.

    Three columns repeat what other rows hold, so that a front or a status reads one index instead
    of every trial (:mod:`autopeft.store.fronts`): ``structure_digest`` names the structure
    (:func:`structure_digest`), ``metric_value`` is the trial's value of its job's first objective,
    the task metric (null until measured), and ``twinned`` says that another search trial of the
    job at the same rung has the same structure (set when the second one is added; validation runs
    take no part), so every trial that :func:`autopeft.objectives.pooled` pools with another is
    twinned.
    """

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_trials_job_number"),
        # a rung's structures run once, by cost and metric; its twinned trials
        Index("ix_trials_job_rung_cost", "job_id", "state", "rung", "twinned", "trainable_params", "metric_value",
              "role"),
        # the trials of one structure at a rung
        Index("ix_trials_job_digest", "job_id", "rung", "structure_digest"),
        # a job's trial counts by state, its practitioner defaults and validation runs
        Index("ix_trials_job_role", "job_id", "role", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    config: Mapped[dict[str, Any]]
    structure: Mapped[dict[str, Any]]
    trainable_params: Mapped[int] = mapped_column(BigInteger)
    seed: Mapped[int] = mapped_column(BigInteger)
    fidelity: Mapped[dict[str, Any]]
    worker: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    wall_time_s: Mapped[float | None] = mapped_column(Float)
    step_time_s: Mapped[float | None] = mapped_column(Float)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    rung: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    promoted_from: Mapped[int | None] = mapped_column(
        ForeignKey("trials.id", ondelete="SET NULL", name="fk_trials_promoted_from")
    )
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatch_wait_s: Mapped[float | None] = mapped_column(Float)
    timings: Mapped[dict[str, Any] | None]
    split: Mapped[str] = mapped_column(String(16), default="search", server_default="dev")
    role: Mapped[str] = mapped_column(String(16), default="explore", server_default="explore")
    origin_id: Mapped[int | None] = mapped_column(
        ForeignKey("trials.id", ondelete="SET NULL", name="fk_trials_origin_id")
    )
    label: Mapped[str | None] = mapped_column(String(64))
    structure_digest: Mapped[str | None] = mapped_column(String(32))
    metric_value: Mapped[float | None] = mapped_column(Float)
    twinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    job: Mapped[Job] = relationship(back_populates="trials")
    values: Mapped[list[TrialValue]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class TrialValue(Base):
    """One measured metric of a trial (``accuracy``, ``f1``, ``loss``, ``train_loss_last``, ...)."""

    __tablename__ = "trial_values"
    __table_args__ = (UniqueConstraint("trial_id", "name", name="uq_trial_values_trial_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class HypervolumeRecord(Base):
    """The hypervolume of a job's observed front after ``trials_done`` finished trials."""

    __tablename__ = "hypervolumes"
    __table_args__ = (Index("ix_hypervolumes_job_order", "job_id", "id"),)  # a job's latest, without a sort

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    rung: Mapped[int] = mapped_column(Integer)
    trials_done: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    reference: Mapped[dict[str, Any]]
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Event(Base):
    """Something that happened to a job or trial, kept for ``status`` and post-mortems."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)


class SensitivityRecord(Base):
    """A measurement of one model on one task, made once and reused by every trial: SPT or IST
    scores, or EVA's vectors.

    ``key`` digests model, task, method and the measurement settings in ``params``
    (:func:`autopeft.store.sensitivity.sensitivity_key`); ``scores`` is ``Sensitivity.to_json()``
    (empty for EVA), ``tensors`` the safetensors bytes of a measurement made of tensors.
    """

    __tablename__ = "sensitivities"
    __table_args__ = (UniqueConstraint("key", name="uq_sensitivities_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(Text)
    task: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict[str, Any]]
    key: Mapped[str] = mapped_column(String(64))
    scores: Mapped[dict[str, Any]]
    tensors: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
