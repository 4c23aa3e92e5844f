"""Exporting one stored trial: pick the format's writer, stage its files, move them in when all succeeded."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from autopeft.allocation.lora_init import MeasuredInit
from autopeft.allocation.sparse_rankings import SparseRanking
from autopeft.errors import ExportError
from autopeft.export.autopeft_format import write_autopeft
from autopeft.export.axolotl_format import write_axolotl
from autopeft.export.llamafactory_format import write_llamafactory
from autopeft.export.peft_format import write_peft
from autopeft.export.source import ExportSource, StoredJob
from autopeft.export.trl_format import write_trl
from autopeft.store import JobRecord, Store, TrialRecord
from autopeft.store.sensitivity import cached_tensors
from autopeft.space.tuners import ranking_rule
from autopeft.trials import TrialState

Writer = Callable[[ExportSource, Path], list[Path]]
"""Writes one format into an empty staging folder and returns the files it wrote there."""

FORMATS: dict[str, Writer] = {
    "peft": write_peft,
    "autopeft": write_autopeft,
    "axolotl": write_axolotl,
    "llamafactory": write_llamafactory,
    "trl": write_trl,
}

def export_source(job: JobRecord, trial: TrialRecord, store: Store | None = None) -> ExportSource:
    """The export source of a completed trial; ExportError for any other state.

    A trial whose LoRA starts from EVA or CorDA, or whose sparse update trains entries ranked on task data,
    also needs the job's measurement, read from ``store``.
    """
    if trial.state != TrialState.COMPLETED:
        raise ExportError(f"trial {trial.number} of job {job.id} is {trial.state}, not completed")
    source = ExportSource(job, trial, StoredJob.from_spec(job.spec))
    lora = source.structure.lora
    if lora is not None and lora.starts_from_measurement:
        found = _job_tensors(job, store, _init_key(job, lora.init), f"{lora.init} measurements",
                             "its LoRA starts from it")
        source = replace(source, lora_init=MeasuredInit.from_bytes(lora.init, *found))
    rule = ranking_rule(source.structure)
    if rule is not None:
        key = job.spec.get("ranking_keys", {}).get(rule)
        found = _job_tensors(job, store, key, f"{rule} rankings", "its sparse update trains entries by them")
        source = replace(source, ranking=SparseRanking.from_bytes(rule, *found))
    return source


def _init_key(job: JobRecord, init: str) -> str | None:
    """The store key of the job's measurement of ``init`` (jobs stored before CorDA kept EVA's as ``eva_key``)."""
    return job.spec.get("init_keys", {}).get(init) or (job.spec.get("eva_key") if init == "eva" else None)


def _job_tensors(job: JobRecord, store: Store | None, key: str | None, what: str, why: str) -> tuple[bytes, float]:
    found = cached_tensors(store, key) if store is not None and key is not None else None
    if found is None:
        raise ExportError(f"job {job.id}'s {what} are not in the store, and {why}")
    return found


def export_trial(job: JobRecord, trial: TrialRecord, fmt: str, out_dir: Path, store: Store | None = None) -> list[Path]:
    """Write ``trial`` of ``job`` in format ``fmt`` into ``out_dir``; returns the files written.

    The writer works in a staging folder; its files are moved into ``out_dir`` only when the
    whole export succeeded and every one of them lands inside ``out_dir``, so a failed export
    leaves nothing behind.
    """
    writer = FORMATS.get(fmt)
    if writer is None:
        raise ExportError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} exists and is not a folder")
    source = export_source(job, trial, store)
    with tempfile.TemporaryDirectory(prefix="autopeft-export-") as staging:
        staged = Path(staging).resolve()
        written = [Path(path).resolve() for path in writer(source, staged)]
        targets = [_target_inside(out_dir, staged, path) for path in written]
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, target in zip(written, targets):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), target)
    return targets


def _target_inside(out_dir: Path, staged: Path, path: Path) -> Path:
    """Where a staged file goes in ``out_dir``; ExportError when that would be outside it."""
    if not path.is_relative_to(staged) or not path.is_file():
        raise ExportError(f"export wrote {path} outside its staging folder; nothing written")
    target = out_dir / path.relative_to(staged)
    # An existing link could carry the file elsewhere, and moving onto a folder moves into it.
    for existing in (target, *target.parents):
        if existing == out_dir:
            break
        if existing.is_symlink() or (existing == target and existing.is_dir()):
            raise ExportError(f"{existing} is a link or a folder; it would take the export outside {out_dir}")
    return target
