"""``--format peft``: LoRA, pure IA3 and other peft tuners validated on the real MiniLM; refusals say why."""

from __future__ import annotations

import copy
import json

import pytest
from peft import IA3Config, LoraConfig, PeftConfig, PeftModel, get_peft_model

from autopeft.errors import ExportError
from autopeft.export import export_trial
from autopeft.models import TaskHead, load_base_model
from autopeft.space.sparse_masks import MASK_FUNCTIONS
from autopeft.space.structure import LoraModules, Structure, TunerModules
from autopeft.tasks import TaskKind
from tests.export.conftest import grid, lora

pytestmark = pytest.mark.slow
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def loaded_count(out, minilm_ref):
    """The saved config as peft reads it, and the trainable count peft builds from it on MiniLM."""
    config = PeftConfig.from_pretrained(str(out))
    model = get_peft_model(load_base_model(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, 2)), copy.deepcopy(config))
    return config, model.get_nb_trainable_parameters()[0]


def test_lora_with_per_layer_ranks_round_trips(mrpc_job, minilm_ref, tmp_path):
    ranks = {(layer, role): 2 ** layer for layer in range(6) for role in ("q", "v")}
    trial = mrpc_job.trial(lora(ranks, variant="rslora"))
    export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    config, count = loaded_count(tmp_path / "out", minilm_ref)
    assert isinstance(config, LoraConfig) and config.use_rslora
    # rsLoRA keeps one alpha at every rank (2 x 4), so its scaling alpha / sqrt(r) falls with the rank
    assert config.lora_alpha == 8 and set(config.alpha_pattern.values()) <= {8}
    assert count == trial.trainable_params
    assert config.base_model_name_or_path == MINILM_HUB_ID

    # stored before rsLoRA kept one alpha (no alpha_rank in its JSON): it exports as it was trained, alpha = 2 r
    stored = lora(ranks, variant="rslora").to_json()
    del stored["lora"]["alpha_rank"]
    older = mrpc_job.trial(Structure.from_json(stored))
    export_trial(*mrpc_job.records(older), "peft", tmp_path / "older")
    config, _ = loaded_count(tmp_path / "older", minilm_ref)
    assert {config.lora_alpha, *config.alpha_pattern.values()} == {2 * rank for rank in ranks.values()}

    # stored while rsLoRA's one alpha was 16: it keeps it
    stored["lora"]["alpha_rank"] = 8
    export_trial(*mrpc_job.records(mrpc_job.trial(Structure.from_json(stored))), "peft", tmp_path / "alpha16")
    config, _ = loaded_count(tmp_path / "alpha16", minilm_ref)
    assert {config.lora_alpha, *config.alpha_pattern.values()} == {16}


def test_pure_ia3_exports_as_an_ia3_config(mrpc_job, minilm_ref, tmp_path):
    structure = Structure(ia3=frozenset(grid(range(6), ("k", "v", "down"))))
    trial = mrpc_job.trial(structure)
    export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    config, count = loaded_count(tmp_path / "out", minilm_ref)
    assert isinstance(config, IA3Config)
    assert count == trial.trainable_params == 6 * (384 + 384 + 1536) + 384 * 2 + 2
    assert sorted(config.feedforward_modules) == [f"bert.encoder.layer.{i}.output.dense" for i in range(6)]


def test_pissa_and_kasa_export_as_the_lora_config_that_rebuilds_them(mrpc_job, minilm_ref, tmp_path):
    trial = mrpc_job.trial(lora(grid((4, 5), ("q", "v")), variant="kasa", init="pissa"))
    export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    config, count = loaded_count(tmp_path / "out", minilm_ref)
    assert config.init_lora_weights == "pissa" and config.kasa_config is not None
    assert count == trial.trainable_params


@pytest.mark.parametrize(
    ("method", "size"),
    [("adalora", 4), ("loha", 4), ("lokr", 4), ("vera", 64), ("oft", 32), ("hra", 4), ("c3a", 64), ("shira", 8), ("sparse_random", 8),
     ("ln_tuning", 0)],
)
def test_other_peft_tuners_export_through_their_own_config_class(mrpc_job, minilm_ref, tmp_path, method, size):
    from autopeft.space.tuners import NORMS, TUNER_METHODS

    places = grid((4, 5), (NORMS,)) if method == "ln_tuning" else grid((4, 5), ("q", "v", "up"))
    trial = mrpc_job.trial(Structure(tuner=TunerModules(method, size, frozenset(places))))
    export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    config, count = loaded_count(tmp_path / "out", minilm_ref)
    assert type(config).__name__ == TUNER_METHODS[method].config_class
    assert count == trial.trainable_params


def test_a_searched_setting_is_written_into_peft_s_config(mrpc_job, minilm_ref, tmp_path):
    places = frozenset(grid((4, 5), ("q", "v")))
    trial = mrpc_job.trial(Structure(tuner=TunerModules("delora", 4, places, {"delora_lambda": 1.0})))
    export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    config, count = loaded_count(tmp_path / "out", minilm_ref)
    assert type(config).__name__ == "DeloraConfig" and config.delora_lambda == 1.0
    assert count == trial.trainable_params


@pytest.mark.parametrize("rule", ["magnitude", "principal"])
def test_shira_by_a_rule_peft_does_not_ship_exports_its_entries_for_peft_s_loader(mrpc_job, minilm_ref, tmp_path, rule):
    structure = Structure(tuner=TunerModules(f"sparse_{rule}", 2, frozenset(grid((1, 4), ("v", "up")))))
    trial = mrpc_job.trial(structure)
    written = export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    assert sorted(p.name for p in written) == ["adapter_config.json", "adapter_model.safetensors"]
    assert PeftConfig.from_pretrained(str(tmp_path / "out")).base_model_name_or_path == MINILM_HUB_ID
    base = load_base_model(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, 2))
    model = PeftModel.from_pretrained(base, str(tmp_path / "out"), is_trainable=True)
    assert model.get_nb_trainable_parameters()[0] == trial.trainable_params
    for place in structure.tuner.places:
        module = model.get_submodule(f"base_model.model.{mrpc_job.layout.matrix(*place).name}")
        rows, columns = module.shira_indices["default"]
        mask = MASK_FUNCTIONS[rule](module.get_base_layer(), 2)
        assert mask[rows.long(), columns.long()].all() and len(rows) == mask.sum() == 2 * sum(mask.shape)
    with pytest.raises(ExportError, match=f"trains SHiRA entries chosen by {rule}, which a TRL script cannot"):
        export_trial(*mrpc_job.records(trial), "trl", tmp_path / "trl")


@pytest.mark.parametrize(
    "structure, reason",
    [
        (Structure(serial_adapter={0: 8}), "serial bottleneck adapters (peft has no bottleneck adapters)"),
        (Structure(parallel_adapter={1: 8}), "parallel bottleneck adapters"),
        (Structure(prefix={2: 4}), "per-layer prefixes"),
        (Structure(lora=LoraModules({(0, "q"): 4}), ia3=frozenset({(1, "v")})), "LoRA mixed with IA3"),
        (Structure(tuner=TunerModules("bias", 0, frozenset({(1, "v")}))), "peft has no bias-only tuner"),
    ],
    ids=["serial", "parallel", "prefix", "lora+ia3", "bias"],
)
def test_structures_peft_cannot_hold_are_refused_with_the_reason(mrpc_job, tmp_path, structure, reason):
    trial = mrpc_job.trial(structure)
    with pytest.raises(ExportError) as refused:
        export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    message = str(refused.value)
    assert reason in message and "--format autopeft" in message and "\n" not in message
    assert message.startswith(f"trial {trial.number} of job {mrpc_job.job_id}: a single peft adapter cannot hold")
    assert not (tmp_path / "out").exists()


def test_a_count_that_differs_from_the_trial_writes_nothing(mrpc_job, tmp_path):
    trial = mrpc_job.trial(lora(grid(range(6), "qv")), trainable_params=1234)
    with pytest.raises(ExportError, match="peft builds 74,498 trainable parameters .* reported 1,234; nothing written"):
        export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_saved_json_is_what_peft_reads(mrpc_job, tmp_path):
    trial = mrpc_job.trial(lora({(0, "q"): 4, (1, "q"): 8}))
    export_trial(*mrpc_job.records(trial), "peft", tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert saved["rank_pattern"] == {r"^bert\.encoder\.layer\.0\.attention\.self\.query": 4,
                                     r"^bert\.encoder\.layer\.1\.attention\.self\.query": 8}
    assert saved["task_type"] == "SEQ_CLS" and saved["peft_type"] == "LORA"
