"""Exporting a trial's structure into the configuration format of a training stack."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from autopeft.errors import ExportError
from autopeft.export.peft_format import write_peft
from autopeft.scheduler.spec import StoredJob
from autopeft.store import JobRecord, TrialRecord
from autopeft.trials import TrialState

Writer = Callable[[TrialRecord, StoredJob, Path], list[Path]]
FORMATS: dict[str, Writer] = {"peft": write_peft}


def export_trial(job: JobRecord, trial: TrialRecord, fmt: str, out_dir: Path) -> list[Path]:
    """Write ``trial`` of ``job`` in format ``fmt`` into ``out_dir``; returns the files written.

    Files are written to a staging folder first and moved into ``out_dir`` only when the whole
    export succeeded, so a failed export leaves nothing behind.
    """
    writer = FORMATS.get(fmt)
    if writer is None:
        raise ExportError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    if trial.state != TrialState.COMPLETED:
        raise ExportError(f"trial {trial.number} of job {job.id} is {trial.state}, not completed")
    out_dir = out_dir.expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} exists and is not a folder")
    stored = StoredJob.from_spec(job.spec)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".export-") as staging:
        written = writer(trial, stored, Path(staging))
        out_dir.mkdir(exist_ok=True)
        final = []
        for path in written:
            target = out_dir / path.relative_to(staging)
            shutil.move(str(path), target)
            final.append(target)
    return final
