"""Bad export requests fail with one line and leave nothing behind; files stay inside --out."""

from __future__ import annotations

import os

import pytest

from autopeft.errors import ExportError
from autopeft.export import FORMATS, export_trial
from autopeft.trials import TrialState
from tests.export.conftest import grid, lora

pytestmark = pytest.mark.slow


@pytest.fixture
def lora_trial(mrpc_job):
    return mrpc_job.records(mrpc_job.trial(lora(grid(range(6), "qv"))))


def test_unknown_format(lora_trial, tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'onnx' \\(choose from peft, autopeft, axolotl"):
        export_trial(*lora_trial, "onnx", tmp_path / "out")


@pytest.mark.parametrize("state", [TrialState.FAILED, TrialState.PENDING])
def test_only_completed_trials_export(mrpc_job, tmp_path, state):
    trial = mrpc_job.trial(lora(grid(range(6), "qv")), state=state)
    with pytest.raises(ExportError, match=f"trial {trial.number} of job {mrpc_job.job_id} is {state}, not completed"):
        export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_folder(lora_trial, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="exists and is not a folder"):
        export_trial(*lora_trial, "peft", tmp_path / "file")


def test_a_link_in_out_cannot_carry_the_export_elsewhere(lora_trial, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / "adapter_config.json")
    with pytest.raises(ExportError, match="is a link or a folder; it would take the export outside"):
        export_trial(*lora_trial, "peft", out)
    assert list(elsewhere.iterdir()) == []


def test_a_writer_cannot_write_outside_its_staging_folder(lora_trial, tmp_path, monkeypatch):
    outside = tmp_path / "outside.txt"

    def escaping_writer(source, staging):
        (staging / "ok.txt").write_text("fine")
        outside.write_text("escaped")
        return [staging / "ok.txt", staging / ".." / ".." / outside]

    monkeypatch.setitem(FORMATS, "escaping", escaping_writer)
    with pytest.raises(ExportError, match="outside its staging folder; nothing written"):
        export_trial(*lora_trial, "escaping", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_exports_overwrite_their_own_files_in_an_existing_folder(lora_trial, tmp_path):
    out = tmp_path / "out"
    first = export_trial(*lora_trial, "peft", out)
    second = export_trial(*lora_trial, "peft", out)
    assert first == second == [out.resolve() / "adapter_config.json"]
