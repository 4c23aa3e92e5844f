"""SPT complete on the real MiniLM with SST-2: the budgeted ``spt_sparse`` rule puts LoRA on the
matrices that pass SPT's switch and sparse deltas on the sensitive weights of the others; the job
measures the scores and the entry ranking once; the autopeft export carries the entries, peft's
format refuses, what loads trains exactly the trial's entries, and a trained trial compresses
with ComPEFT and loads back."""

from __future__ import annotations

import math

import pytest
import torch

import autopeft
from autopeft.errors import ExportError
from autopeft.export import export_trial
from autopeft.export.autopeft_format import SPARSE_ENTRIES_NAME
from autopeft.models import load_base_model
from autopeft.space.allocation import largest_sparse_delta
from autopeft.space.cost import count_trainable
from autopeft.space.structure import place_key
from tests.export.conftest import classification_head, measured_job

pytestmark = pytest.mark.slow

SPACE = """\
name: spt-sparse-test
budget:
  fraction: {low: 0.004, high: 0.008}
  rules: [spt_sparse]
  sharpness: {low: 0.0, high: 2.0}
  roles: [q, k, v, o, up, down]
"""
BUDGET_FRACTION = 0.006


def allocated(prepared):
    return prepared.space.decode({"budget.fraction": BUDGET_FRACTION, "budget.sharpness": 1.0})


@pytest.fixture(scope="module")
def spt_job(measuring_store, sst2, tmp_path_factory):
    return measured_job(measuring_store, SPACE, str(sst2.source), allocated, tmp_path_factory.mktemp("space"))


def test_the_allocation_spends_the_budget_on_lora_and_on_the_sensitive_weights_of_the_other_matrices(
    spt_job, capsys
):
    prepared, again, measured, job, trial = spt_job
    assert measured == ["spt", "sparse_sensitivity"]  # the second provision read the cache
    structure, layout = allocated(prepared), prepared.space.layout
    budget = round(BUDGET_FRACTION * layout.total_params)
    assert 0.9 * budget <= count_trainable(structure, layout) <= budget
    assert structure.lora is not None and structure.sparse is not None
    assert not set(structure.sparse.entries) & set(structure.lora.ranks)
    deltas = sum(structure.sparse.entries.values())
    with capsys.disabled():
        print(f"\nspt_sparse at {BUDGET_FRACTION:.1%}: LoRA on {len(structure.lora.ranks)} matrices, sparse deltas of "
              f"{deltas:,} entries on {len(structure.sparse.entries)}")
    ranking = prepared.rankings["sensitivity"]
    depth = largest_sparse_delta(layout, prepared.space.lora_roles, round(0.008 * layout.total_params), 10.0)
    assert ranking.entries["0.q"].numel() == depth * (384 + 384)
    assert job.spec["ranking_keys"] == {"sensitivity": prepared.ranking_keys["sensitivity"]}
    assert all(torch.equal(ranking.entries[k], again.rankings["sensitivity"].entries[k]) for k in ranking.entries)


def test_the_autopeft_export_trains_exactly_the_ranked_entries_and_reloads_trained(
    spt_job, measuring_store, minilm_ref, tmp_path
):
    prepared, _, _, job, trial = spt_job
    structure = allocated(prepared)
    written = export_trial(job, trial, "autopeft", tmp_path / "out", measuring_store)
    assert sorted(p.name for p in written) == sorted(["autopeft_config.json", SPARSE_ENTRIES_NAME])
    model = load_base_model(minilm_ref, classification_head())
    applied = autopeft.apply(model, tmp_path / "out")
    assert applied.num_trainable == trial.trainable_params
    for place, count in structure.sparse.entries.items():
        module = model.get_submodule(prepared.space.layout.matrix(*place).name)
        wanted = prepared.rankings["sensitivity"].entries[place_key(place)][:count]
        assert module.parametrizations.weight[0].indices.tolist() == wanted.tolist()
    with torch.no_grad():
        for parameter in applied.parameters:
            parameter.add_(torch.randn_like(parameter) * 0.05)
        inputs = {"input_ids": torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])}
        expected = model(**inputs).logits
    autopeft.save_adapter(applied, tmp_path / "adapter")
    fresh = load_base_model(minilm_ref, classification_head())
    autopeft.load_adapter(fresh, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(fresh(**inputs).logits, expected, atol=1e-5)


def test_peft_s_format_refuses_with_the_reason(spt_job, measuring_store, tmp_path):
    _, _, _, job, trial = spt_job
    with pytest.raises(ExportError, match="sparse updates with their own entry count"):
        export_trial(job, trial, "peft", tmp_path / "peft", measuring_store)


def test_compeft_keeps_a_tenth_of_each_trained_delta_ternary_and_the_folder_loads_back(
    spt_job, measuring_store, minilm_ref, tmp_path
):
    from autopeft.export.compeft_format import load_compressed, named_trainable
    from autopeft.training import TrainingOptions
    from autopeft.training.compress import compress_trial
    from autopeft.training.run import train_config
    from autopeft.training.sources import config_of_trial, model_of, task_of

    _, _, _, job, trial = spt_job
    config = config_of_trial(job, trial, measuring_store)
    task = task_of(config)
    options = TrainingOptions(epochs=1, learning_rate=2e-3, batch_size=16, max_length=32, train_examples=64, seed=0,
                              lr_rescues=0)  # four steps: too few to judge a stall
    train_config(config, model_of(config), task, options, tmp_path / "weights")
    report = compress_trial(config, tmp_path / "weights", 0.1, task, tmp_path / "packed")
    assert report.bytes_after < report.bytes_before and "accuracy" in report.dev_after
    loaded = named_trainable(load_compressed(load_base_model(minilm_ref, classification_head()), tmp_path / "packed"))
    deltas = {name: p.detach() for name, p in loaded.items() if name.endswith("parametrizations.weight.0.values")}
    assert len(deltas) == len(allocated(spt_job[0]).sparse.entries)
    for name, values in deltas.items():  # trained from zero: the values are the update itself
        kept = values[values != 0]
        assert kept.numel() == math.ceil(0.1 * values.numel()) and kept.abs().unique().numel() == 1, name
