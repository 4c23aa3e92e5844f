"""A sparse update by SPT's sensitivity rule on the real MiniLM with SST-2: the job ranks the
entries once and keeps them in the store; the autopeft and peft exports carry the entries, and
what loads trains exactly the trial's entries."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

import autopeft
from autopeft.errors import ExportError
from autopeft.export import export_trial
from autopeft.export.autopeft_format import SPARSE_ENTRIES_NAME
from autopeft.models import load_base_model
from autopeft.space.structure import Structure, TunerModules, place_key
from tests.export.conftest import classification_head, grid, measured_job

pytestmark = pytest.mark.slow

SPACE = """\
name: sparse-sensitivity-test
modules:
  methods:
    roles: [q, v]
    choices:
      sparse_sensitivity: {size: {choices: [1, 2]}}
      sparse_magnitude: {size: {choices: [1, 2]}}
"""
STRUCTURE = Structure(tuner=TunerModules("sparse_sensitivity", 2, frozenset(grid((4, 5), ("q", "v")))))


@pytest.fixture(scope="module")
def sparse_job(measuring_store, sst2, tmp_path_factory):
    """A stored job whose space offers the sensitivity rule, its ranking measured, and one completed trial."""
    return measured_job(measuring_store, SPACE, str(sst2.source), STRUCTURE, tmp_path_factory.mktemp("space"))


def test_the_job_ranks_once_for_its_largest_size_and_records_where_the_ranking_is(sparse_job):
    prepared, again, measured, job, _ = sparse_job
    assert measured == ["sparse_sensitivity"]  # the second provision read the cache
    ranking = prepared.rankings["sensitivity"]
    assert set(prepared.rankings) == {"sensitivity"} and len(ranking.entries) == 6 * 6
    assert ranking.entries["0.q"].numel() == 2 * (384 + 384) and ranking.entries["0.up"].numel() == 2 * (384 + 1536)
    assert all(torch.equal(ranking.entries[k], again.rankings["sensitivity"].entries[k]) for k in ranking.entries)
    assert job.spec["ranking_keys"] == {"sensitivity": prepared.ranking_keys["sensitivity"]}


def test_the_autopeft_export_carries_the_trained_entries_and_apply_trains_exactly_them(
    sparse_job, measuring_store, minilm_ref, tmp_path
):
    prepared, _, _, job, trial = sparse_job
    written = export_trial(job, trial, "autopeft", tmp_path / "out", measuring_store)
    assert sorted(p.name for p in written) == sorted(["autopeft_config.json", SPARSE_ENTRIES_NAME])
    model = load_base_model(minilm_ref, classification_head())
    applied = autopeft.apply(model, tmp_path / "out")
    assert applied.num_trainable == trial.trainable_params
    for place in STRUCTURE.tuner.places:
        module = model.get_submodule(prepared.space.layout.matrix(*place).name)
        rows, columns = module.shira_indices["autopeft"]
        wanted = prepared.rankings["sensitivity"].entries[place_key(place)][: 2 * (384 + 384)]
        assert set((rows * 384 + columns).tolist()) == set(wanted.tolist())
    with torch.no_grad():
        for parameter in applied.parameters:
            parameter.add_(torch.randn_like(parameter) * 0.05)
        inputs = {"input_ids": torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])}
        expected = model(**inputs).logits
    autopeft.save_adapter(applied, tmp_path / "adapter")  # a trained update reloads onto the same entries
    fresh = load_base_model(minilm_ref, classification_head())
    autopeft.load_adapter(fresh, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(fresh(**inputs).logits, expected, atol=1e-5)
    (tmp_path / "out" / SPARSE_ENTRIES_NAME).unlink()
    with pytest.raises(ExportError, match=f"no {SPARSE_ENTRIES_NAME} beside it"):
        autopeft.apply(load_base_model(minilm_ref, classification_head()), tmp_path / "out")


def test_the_peft_export_trains_exactly_the_ranked_entries_and_a_store_without_the_ranking_fails_clearly(
    sparse_job, measuring_store, minilm_ref, tmp_path
):
    prepared, _, _, job, trial = sparse_job
    written = export_trial(job, trial, "peft", tmp_path / "peft", measuring_store)
    assert sorted(p.name for p in written) == ["adapter_config.json", "adapter_model.safetensors"]
    model = PeftModel.from_pretrained(load_base_model(minilm_ref, classification_head()), str(tmp_path / "peft"),
                                      is_trainable=True)
    assert model.peft_config["default"].mask_type == "sensitivity"
    assert model.get_nb_trainable_parameters()[0] == trial.trainable_params
    for place in STRUCTURE.tuner.places:
        module = model.get_submodule(f"base_model.model.{prepared.space.layout.matrix(*place).name}")
        rows, columns = module.shira_indices["default"]
        wanted = prepared.rankings["sensitivity"].entries[place_key(place)][: 2 * (384 + 384)]
        assert set((rows * 384 + columns).tolist()) == set(wanted.tolist())
    with pytest.raises(ExportError, match="sensitivity rankings are not in the store"):
        export_trial(job, trial, "peft", tmp_path / "none")
    assert not (tmp_path / "none").exists()
