"""``--format autopeft``: every module type, the facts needed to check it, validated on MiniLM."""

from __future__ import annotations

import json

import pytest

import autopeft
from autopeft.errors import ExportError
from autopeft.export import export_trial
from autopeft.export.autopeft_format import AutopeftConfig
from autopeft.space.structure import LoraModules, Structure

pytestmark = pytest.mark.slow

EVERYTHING = Structure(
    lora=LoraModules({(0, "q"): 4, (5, "v"): 8}, variant="dora"),
    ia3=frozenset({(1, "k"), (2, "down")}),
    serial_adapter={0: 8, 3: 16},
    parallel_adapter={4: 12},
    prefix={1: 5, 5: 2},
)


def test_every_module_type_is_written_with_its_model_facts(mrpc_job, tmp_path):
    trial = mrpc_job.trial(EVERYTHING)
    (path,) = export_trial(*mrpc_job.records(trial), "autopeft", tmp_path / "out")
    assert path.name == "autopeft_config.json"
    data = json.loads(path.read_text())
    assert data["format"] == "autopeft" and data["autopeft_version"] == autopeft.__version__
    assert data["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and data["model"] == "minilm"
    assert data["task_head"] == {"kind": "classification", "num_labels": 2, "label_names": ["0", "1"]}
    assert data["module_types"] == ["lora", "ia3", "serial_adapter", "parallel_adapter", "prefix"]
    assert Structure.from_json(data["structure"]) == EVERYTHING
    assert data["trainable_params"] == trial.trainable_params
    assert data["origin"]["trial"] == trial.number and data["task"]["metric"] == "f1"
    layer = data["layout"]["layers"][2]
    assert layer["modules"]["down"] == "bert.encoder.layer.2.output.dense"
    assert layer["attention"] == "bert.encoder.layer.2.attention.self" and layer["kv_width"] == 384
    assert AutopeftConfig.load(tmp_path / "out").structure == EVERYTHING


def test_a_count_that_differs_from_the_trial_writes_nothing(mrpc_job, tmp_path):
    trial = mrpc_job.trial(EVERYTHING, trainable_params=99)
    with pytest.raises(ExportError, match="trainable parameters on this model and 99 on the config's base model"):
        export_trial(*mrpc_job.records(trial), "autopeft", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    ("{", "cannot read autopeft config"),
    ('{"format": "peft"}', "is not an autopeft config of format version 1"),
    ('{"format": "autopeft", "format_version": 1}', "is malformed: KeyError"),
])
def test_unreadable_configs_are_one_line_errors(tmp_path, content, message):
    (tmp_path / "autopeft_config.json").write_text(content)
    with pytest.raises(ExportError, match=message):
        AutopeftConfig.load(tmp_path)
    with pytest.raises(ExportError, match="no autopeft config at"):
        AutopeftConfig.load(tmp_path / "missing")
