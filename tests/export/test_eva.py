"""An EVA-initialised LoRA trial on the real MiniLM with SST-2: the job measures the vectors once
and keeps them in the store; every export carries or refuses them, and what loads starts exactly
where the trial started."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import PeftConfig, get_peft_model
from peft.tuners.lora.eva import initialize_lora_eva_weights
from safetensors.torch import load_file

import autopeft
from autopeft.errors import ExportError
from autopeft.export import export_trial
from autopeft.export.autopeft_format import EVA_NAME
from autopeft.export.peft_format import EVA_STATE_NAME
from autopeft.models import load_base_model
from autopeft.space.structure import place_key
from tests.export.conftest import classification_head, grid, lora, measured_job

pytestmark = pytest.mark.slow

SPACE = """\
name: eva-test
modules:
  lora:
    roles: [q, v]
    rank: {choices: [0, 2, 4], per: layer}
    inits: [default, eva]
"""
STRUCTURE = lora(grid((4, 5), ("q", "v")), rank=4, init="eva")


@pytest.fixture(scope="module")
def eva_job(export_store, sst2, tmp_path_factory):
    """A stored job whose space offers EVA, its vectors measured, and one completed EVA trial."""
    return measured_job(export_store, SPACE, str(sst2.source), STRUCTURE, tmp_path_factory.mktemp("space"))


def test_the_job_measures_once_at_its_largest_rank_and_records_where_they_are(eva_job):
    prepared, again, measured, job, _ = eva_job
    assert measured == ["eva"]  # the second provision read the cache
    assert prepared.eva.rank == 4 and len(prepared.eva.components) == 6 * 6
    assert all(torch.equal(prepared.eva.components[k], again.eva.components[k]) for k in prepared.eva.components)
    assert job.spec["eva_key"] == prepared.eva_key


def test_the_autopeft_export_carries_the_vectors_and_apply_starts_from_them(eva_job, export_store, minilm_ref, tmp_path):
    prepared, _, _, job, trial = eva_job
    written = export_trial(job, trial, "autopeft", tmp_path / "out", export_store)
    assert sorted(p.name for p in written) == sorted(["autopeft_config.json", EVA_NAME])
    model = load_base_model(minilm_ref, classification_head())
    applied = autopeft.apply(model, tmp_path / "out")
    for place in STRUCTURE.lora.ranks:
        lora_a = model.get_submodule(prepared.space.layout.matrix(*place).name).lora_A["autopeft"].weight
        assert torch.equal(lora_a, prepared.eva.components[place_key(place)][:4])
    assert applied.num_trainable == trial.trainable_params
    (tmp_path / "out" / EVA_NAME).unlink()
    with pytest.raises(ExportError, match=f"no {EVA_NAME} beside it"):
        autopeft.apply(load_base_model(minilm_ref, classification_head()), tmp_path / "out")


def test_the_peft_export_loads_with_peft_s_own_eva_loader(eva_job, export_store, minilm_ref, tmp_path):
    prepared, _, _, job, trial = eva_job
    export_trial(job, trial, "peft", tmp_path / "out", export_store)
    config = PeftConfig.from_pretrained(str(tmp_path / "out"))
    assert config.init_lora_weights == "eva" and config.eva_config.rho == 1.0
    model = get_peft_model(load_base_model(minilm_ref, classification_head()), copy.deepcopy(config))
    initialize_lora_eva_weights(model, eva_state_dict=load_file(str(tmp_path / "out" / EVA_STATE_NAME)))
    assert model.get_nb_trainable_parameters()[0] == trial.trainable_params
    for place in STRUCTURE.lora.ranks:
        name = prepared.space.layout.matrix(*place).name
        lora_a = model.get_submodule(f"base_model.model.{name}").lora_A["default"].weight
        assert torch.equal(lora_a, prepared.eva.components[place_key(place)][:4])


def test_formats_that_cannot_load_the_vectors_refuse_and_a_store_without_them_fails_clearly(
    eva_job, export_store, tmp_path
):
    _, _, _, job, trial = eva_job
    with pytest.raises(ExportError, match="starts LoRA from EVA vectors, which a TRL script cannot load"):
        export_trial(job, trial, "trl", tmp_path / "trl", export_store)
    with pytest.raises(ExportError, match="EVA vectors are not in the store"):
        export_trial(job, trial, "autopeft", tmp_path / "none")
    assert not (tmp_path / "trl").exists() and not (tmp_path / "none").exists()
