"""The sensitivity cache: SPT / IST scores (and EVA's vectors, as tensors) kept once per (model,
task, method, settings).

A measurement is deterministic given its settings and data, so a job looks its scores up before
measuring, and every trial of every job on the same model and data reuses them. ``params`` must
hold every setting that changes the scores — the measurement's own (batches, batch_size, seed;
steps, probe_batches for IST), the subset's (train_examples, max_length, data seed) and the data
itself (``DATA_PARAMS``: a digest of the train split as loaded and the column options) — and
nothing else, since any difference makes a new key. A task's path alone is not enough: the file
behind it can be edited, or read through other columns, and old scores would be served for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from autopeft.space.sensitivity import Sensitivity
from autopeft.store.models import SensitivityRecord
from autopeft.store.store import Store


DATA_PARAMS = ("train_digest", "text_columns", "label_column")


def sensitivity_key(*, model: str, task: str, method: str, params: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of what the scores depend on; ValueError when ``params``
    do not pin the data (``DATA_PARAMS``), so that no caller can key scores on a path alone."""
    missing = [name for name in DATA_PARAMS if name not in params]
    if missing:
        raise ValueError(f"sensitivity params lack {', '.join(missing)}: the scores would outlive edits of their data")
    canonical = json.dumps(
        {"model": model, "task": task, "method": method, "params": params}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def cached_sensitivity(
    store: Store, *, model: str, task: str, method: str, params: Mapping[str, Any]
) -> Sensitivity | None:
    """The stored scores for exactly these settings, or None."""
    row = _cached_row(store, sensitivity_key(model=model, task=task, method=method, params=params))
    return None if row is None else Sensitivity.from_json(row.scores)


def save_sensitivity(
    store: Store, sensitivity: Sensitivity, *, model: str, task: str, params: Mapping[str, Any]
) -> None:
    """Keep ``sensitivity`` under its settings (see :func:`_save_row`)."""
    _save_row(store, model=model, task=task, method=sensitivity.method, params=params,
              scores=sensitivity.to_json(), seconds=sensitivity.seconds)


def cached_tensors(store: Store, key: str) -> tuple[bytes, float] | None:
    """(safetensors bytes, seconds the measurement took) stored under ``key``, or None."""
    row = _cached_row(store, key)
    return None if row is None or row.tensors is None else (row.tensors, row.seconds)


def save_tensors(
    store: Store, tensors: bytes, seconds: float, *, model: str, task: str, method: str, params: Mapping[str, Any]
) -> str:
    """Keep a measurement made of tensors (safetensors bytes) under its settings; returns its key."""
    return _save_row(store, model=model, task=task, method=method, params=params, scores={}, seconds=seconds,
                     tensors=tensors)


def _cached_row(store: Store, key: str) -> SensitivityRecord | None:
    with Session(store.engine, expire_on_commit=False) as session:
        return session.scalar(select(SensitivityRecord).where(SensitivityRecord.key == key))


def _save_row(
    store: Store, *, model: str, task: str, method: str, params: Mapping[str, Any], scores: dict[str, Any],
    seconds: float, tensors: bytes | None = None,
) -> str:
    """Insert one measurement; when its settings are already stored (another process measured at
    the same time), the first record stays: both are the same measurement. Returns its key."""
    key = sensitivity_key(model=model, task=task, method=method, params=params)
    record = SensitivityRecord(model=model, task=task, method=method, params=dict(params), key=key,
                               scores=scores, tensors=tensors, seconds=seconds)
    try:
        with Session(store.engine) as session, session.begin():
            session.add(record)
    except IntegrityError:
        pass
    return key
