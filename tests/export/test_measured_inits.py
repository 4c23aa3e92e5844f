"""LoRA trials that start from a measurement on task data (EVA, CorDA), on the real MiniLM with
SST-2: the job measures once and keeps the measurement in the store; every export carries or
refuses it, and what loads starts exactly where the trial started."""

from __future__ import annotations

import pytest
import torch
from peft import PeftConfig, get_peft_model
from peft.tuners.lora.corda import preprocess_corda
from peft.tuners.lora.eva import initialize_lora_eva_weights
from safetensors.torch import load_file

import autopeft
from autopeft.allocation.lora_init import PARTS
from autopeft.errors import ExportError
from autopeft.export import export_trial
from autopeft.export.autopeft_format import init_file_name
from autopeft.export.peft_format import CORDA_CACHE_NAME, EVA_STATE_NAME
from autopeft.models import load_base_model
from tests.export.conftest import classification_head, grid, lora, measured_job

pytestmark = pytest.mark.slow

SPACE = """\
name: {init}-test
modules:
  lora:
    roles: [q, v]
    rank: {{choices: [0, 2, 4], per: layer}}
    inits: [default, {init}]
"""
INPUTS = {"input_ids": torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])}


def structure(init: str):
    return lora(grid((4, 5), ("q", "v")), rank=4, init=init)


@pytest.fixture(scope="module", params=["eva", "corda"])
def init_job(request, measuring_store, sst2, tmp_path_factory):
    """(init, the stored job of a space offering it with its measurement, one completed trial)."""
    init = request.param
    job = measured_job(measuring_store, SPACE.format(init=init), str(sst2.source), structure(init),
                       tmp_path_factory.mktemp("space"))
    return init, *job


def test_the_job_measures_once_at_its_largest_rank_and_records_where_it_is(init_job):
    init, prepared, again, measured, job, _ = init_job
    assert measured == [init]  # the second provision read the cache
    measurement = prepared.inits[init]
    assert measurement.rank == 4 and len(measurement.tensors) == 6 * 6 * len(PARTS[init])
    assert all(torch.equal(t, again.inits[init].tensors[k]) for k, t in measurement.tensors.items())
    assert job.spec["init_keys"] == dict(prepared.init_keys) and init in prepared.init_keys


def test_the_autopeft_export_carries_the_measurement_and_apply_starts_from_it(
    init_job, measuring_store, minilm_ref, tmp_path
):
    init, prepared, _, _, job, trial = init_job
    written = export_trial(job, trial, "autopeft", tmp_path / "out", measuring_store)
    assert sorted(p.name for p in written) == sorted(["autopeft_config.json", init_file_name(init)])
    model = load_base_model(minilm_ref, classification_head())
    with torch.no_grad():
        base = model(**INPUTS).logits
    applied = autopeft.apply(model, tmp_path / "out")
    assert applied.num_trainable == trial.trainable_params
    measured = prepared.inits[init].for_lora(structure(init).lora)
    for place, parts in measured.items():
        module = model.get_submodule(prepared.space.layout.matrix(*place).name)
        lora_a, lora_b = module.lora_A["autopeft"].weight, module.lora_B["autopeft"].weight
        if init == "eva":
            assert torch.equal(lora_a, parts["A"]) and not lora_b.any()
        else:  # CorDA: A = sqrt(S / scale) V^T, B = U sqrt(S / scale), the base keeps W - scale B A
            root = (parts["S"] / module.scaling["autopeft"]).sqrt()
            assert torch.allclose(lora_a, parts["V"] * root[:, None]) and torch.allclose(lora_b, parts["U"].T * root)
    with torch.no_grad():
        assert torch.allclose(model(**INPUTS).logits, base, atol=1e-4)  # both start at the base model's output
    applied.remove()
    (tmp_path / "out" / init_file_name(init)).unlink()
    with pytest.raises(ExportError, match=f"no {init_file_name(init)} beside it"):
        autopeft.apply(load_base_model(minilm_ref, classification_head()), tmp_path / "out")


def load_peft_export(init: str, folder, base):
    """What the README tells a user to run on an exported folder: peft's own loaders only."""
    config = PeftConfig.from_pretrained(str(folder))
    if init == "corda":
        config.corda_config.cache_file = str(folder / config.corda_config.cache_file)
        preprocess_corda(base, config)
    model = get_peft_model(base, config)
    if init == "eva":
        initialize_lora_eva_weights(model, eva_state_dict=load_file(str(folder / EVA_STATE_NAME)))
    return config, model


def test_the_peft_export_loads_with_peft_s_own_loaders_and_starts_where_the_trial_started(
    init_job, measuring_store, minilm_ref, tmp_path
):
    init, prepared, _, _, job, trial = init_job
    written = export_trial(job, trial, "peft", tmp_path / "out", measuring_store)
    assert sorted(p.name for p in written) == sorted(["adapter_config.json",
                                                      {"eva": EVA_STATE_NAME, "corda": CORDA_CACHE_NAME}[init]])
    base = load_base_model(minilm_ref, classification_head())
    with torch.no_grad():
        before = base(**INPUTS).logits
    config, model = load_peft_export(init, tmp_path / "out", base)
    assert config.init_lora_weights == init and (init != "eva" or config.eva_config.rho == 1.0)
    assert model.get_nb_trainable_parameters()[0] == trial.trainable_params
    measured = prepared.inits[init].for_lora(structure(init).lora)
    for place, parts in measured.items():
        module = model.get_submodule(f"base_model.model.{prepared.space.layout.matrix(*place).name}")
        lora_a, lora_b = module.lora_A["default"].weight, module.lora_B["default"].weight
        if init == "eva":
            assert torch.equal(lora_a, parts["A"])
        else:
            root = (parts["S"] / module.scaling["default"]).sqrt()
            assert torch.allclose(lora_a, parts["V"] * root[:, None]) and torch.allclose(lora_b, parts["U"].T * root)
    with torch.no_grad():
        assert torch.allclose(model(**INPUTS).logits, before, atol=1e-4)


def test_formats_that_cannot_load_the_measurement_refuse_and_a_store_without_it_fails_clearly(
    init_job, measuring_store, tmp_path
):
    init, _, _, _, job, trial = init_job
    with pytest.raises(ExportError, match=f"starts LoRA from its {init} measurement, which a TRL script cannot load"):
        export_trial(job, trial, "trl", tmp_path / "trl", measuring_store)
    with pytest.raises(ExportError, match=f"{init} measurements are not in the store"):
        export_trial(job, trial, "autopeft", tmp_path / "none")
    assert not (tmp_path / "trl").exists() and not (tmp_path / "none").exists()
