"""axolotl and LLaMA-Factory YAML: documented keys only, exact structures, refusals never flatten.

The documented key sets are written down from each stack's own source:

- axolotl (axolotl-ai-cloud/axolotl): ``src/axolotl/utils/schemas/peft.py`` (class LoraConfig),
  ``src/axolotl/utils/schemas/model.py`` (``base_model``, ``output_dir``), and
  ``src/axolotl/loaders/adapter.py``, whose ``_build_lora_config_kwargs`` reads
  ``lora_rank_pattern``/``lora_alpha_pattern`` and ``_build_peft_lora_config`` maps the keys to
  peft's LoraConfig.
- LLaMA-Factory (hiyouga/LLaMA-Factory): ``src/llamafactory/hparams/finetuning_args.py``
  (LoraArguments, FinetuningArguments), ``src/llamafactory/hparams/model_args.py``
  (``model_name_or_path``); ``do_train``/``output_dir`` are transformers' TrainingArguments.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml
from peft import get_peft_model
from transformers import TrainingArguments

from autopeft.errors import ExportError
from autopeft.export import export_trial
from autopeft.export.axolotl_format import lora_config_as_axolotl_builds_it
from autopeft.export.llamafactory_format import lora_config_as_llamafactory_builds_it
from autopeft.models import TaskHead, load_base_model, resolve_model
from autopeft.space.structure import LoraModules, Structure, TunerModules
from autopeft.tasks import TaskKind
from tests.export.conftest import grid, lora

pytestmark = pytest.mark.slow

# axolotl: src/axolotl/utils/schemas/peft.py LoraConfig fields ...
AXOLOTL_LORA_KEYS = {
    "load_in_8bit", "load_in_4bit", "adapter", "lora_model_dir", "lora_r", "lora_alpha", "lora_fan_in_fan_out",
    "lora_target_modules", "lora_target_parameters", "lora_target_linear", "lora_modules_to_save",
    "lora_dropout", "peft_layers_to_transform", "peft_layers_pattern", "peft", "peft_use_dora",
    "peft_use_rslora", "peft_layer_replication", "peft_init_lora_weights", "peft_trainable_token_indices",
    "peft_ensure_weight_tying", "peft_autocast_adapter_dtype", "qlora_sharded_model_loading", "lora_on_cpu",
    "gptq", "bnb_config_kwargs", "loraplus_lr_ratio", "loraplus_lr_embedding", "merge_lora", "merge_method",
}
# ... plus the keys src/axolotl/loaders/adapter.py reads (cfg.lora_rank_pattern, cfg.lora_alpha_pattern)
# and src/axolotl/utils/schemas/model.py's ModelInputConfig.base_model / ModelOutputConfig.output_dir.
AXOLOTL_KEYS = AXOLOTL_LORA_KEYS | {"lora_rank_pattern", "lora_alpha_pattern", "base_model", "output_dir"}
AXOLOTL_TYPES = {  # the declared types (schemas/peft.py; adapter.py passes the patterns to peft as they are)
    "lora_r": int, "lora_alpha": int, "lora_dropout": float, "lora_target_modules": list,
    "peft_layers_to_transform": list, "peft_use_dora": bool, "peft_use_rslora": bool,
    "lora_fan_in_fan_out": bool, "lora_rank_pattern": dict, "lora_alpha_pattern": dict,
    "base_model": str, "output_dir": str, "adapter": str, "peft_init_lora_weights": (bool, str),
}

# LLaMA-Factory: src/llamafactory/hparams/finetuning_args.py, LoraArguments fields ...
LLAMAFACTORY_LORA_KEYS = {
    "additional_target", "lora_alpha", "lora_dropout", "lora_rank", "lora_target", "loraplus_lr_ratio",
    "loraplus_lr_embedding", "use_rslora", "use_dora", "pissa_init", "pissa_iter", "pissa_convert",
    "create_new_adapter",
}
# ... FinetuningArguments' own stage / finetuning_type, model_args.py's model_name_or_path, and
# transformers' training arguments (checked against the installed TrainingArguments below).
LLAMAFACTORY_KEYS = LLAMAFACTORY_LORA_KEYS | {"stage", "finetuning_type", "model_name_or_path"}
LLAMAFACTORY_TRAINING_KEYS = {"do_train", "output_dir"}
LLAMAFACTORY_TYPES = {"lora_rank": int, "lora_alpha": int, "lora_dropout": float, "lora_target": str,
                      "use_rslora": bool, "use_dora": bool, "model_name_or_path": str}
LLAMAFACTORY_CHOICES = {"stage": {"pt", "sft", "rm", "ppo", "dpo", "kto"},
                        "finetuning_type": {"lora", "oft", "freeze", "full"}}

SMOLLM_LAYERS = 30


@pytest.fixture(scope="module")
def smollm_model():
    return load_base_model(resolve_model("smollm2"), TaskHead(TaskKind.CAUSAL_LM, 0))


def exported(job, structure, fmt, tmp_path):
    trial = job.trial(structure)
    (path,) = export_trial(*job.records(trial), fmt, tmp_path / fmt)
    return trial, yaml.safe_load(path.read_text()), path.read_text()


def built_count(config, model):
    """Trainable parameters and adapted module names peft builds from ``config`` on ``model``."""
    peft_model = get_peft_model(copy.deepcopy(model), config)
    names = {n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    return peft_model.get_nb_trainable_parameters()[0], names


def check_axolotl_schema(fields):
    assert set(fields) <= AXOLOTL_KEYS, set(fields) - AXOLOTL_KEYS
    for key, value in fields.items():
        assert isinstance(value, AXOLOTL_TYPES[key]), (key, value)
    assert fields["adapter"] == "lora"
    assert all(isinstance(layer, int) for layer in fields.get("peft_layers_to_transform", []))
    assert all(isinstance(v, int) for v in fields.get("lora_alpha_pattern", {}).values())


def check_llamafactory_schema(fields):
    training_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert LLAMAFACTORY_TRAINING_KEYS <= training_fields
    assert set(fields) <= LLAMAFACTORY_KEYS | LLAMAFACTORY_TRAINING_KEYS
    for key, kind in LLAMAFACTORY_TYPES.items():
        assert isinstance(fields[key], kind), (key, fields[key])
    for key, choices in LLAMAFACTORY_CHOICES.items():
        assert fields[key] in choices


def test_axolotl_names_roles_and_layers_when_that_is_exact(smollm_job, smollm_model, tmp_path):
    top_layers = range(20, SMOLLM_LAYERS)
    trial, fields, text = exported(smollm_job, lora(grid(top_layers, ("q", "v")), rank=16), "axolotl", tmp_path)
    check_axolotl_schema(fields)
    assert text.startswith("# LoRA structure of")
    assert fields["lora_target_modules"] == ["q_proj", "v_proj"]
    assert fields["peft_layers_to_transform"] == list(top_layers)
    assert (fields["lora_r"], fields["lora_alpha"]) == (16, 32)
    assert fields["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    count, names = built_count(lora_config_as_axolotl_builds_it(fields), smollm_model)
    assert count == trial.trainable_params
    assert names == {f"model.layers.{i}.self_attn.{m}" for i in top_layers for m in ("q_proj", "v_proj")}


def test_axolotl_keeps_per_module_ranks_in_rank_and_alpha_patterns(smollm_job, smollm_model, tmp_path):
    ranks = {**dict.fromkeys(grid(range(10), ("q",)), 4), **dict.fromkeys(grid(range(10, 30), ("v", "down")), 8)}
    trial, fields, _ = exported(smollm_job, lora(ranks, variant="dora"), "axolotl", tmp_path)
    check_axolotl_schema(fields)
    assert fields["peft_use_dora"] is True and "peft_layers_to_transform" not in fields
    assert len(fields["lora_target_modules"]) == len(ranks)
    assert fields["lora_rank_pattern"][r"^model\.layers\.0\.self_attn\.q_proj"] == 4
    assert fields["lora_alpha_pattern"][r"^model\.layers\.29\.mlp\.down_proj"] == 16
    count, _ = built_count(lora_config_as_axolotl_builds_it(fields), smollm_model)
    assert count == trial.trainable_params


def test_llamafactory_uses_leaf_names_on_every_layer(smollm_job, tmp_path):
    _, fields, _ = exported(smollm_job, lora(grid(range(SMOLLM_LAYERS), ("q", "k", "v", "o")), variant="rslora"),
                            "llamafactory", tmp_path)
    check_llamafactory_schema(fields)
    assert fields["lora_target"] == "k_proj,o_proj,q_proj,v_proj"
    assert (fields["lora_rank"], fields["lora_alpha"], fields["use_rslora"]) == (8, 8, True)  # rsLoRA: alpha 2 x 4
    assert fields["model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_llamafactory_names_a_layer_subset_in_full(smollm_job, smollm_model, tmp_path):
    trial, fields, _ = exported(smollm_job, lora(grid((0, 29), ("up",)), rank=4), "llamafactory", tmp_path)
    check_llamafactory_schema(fields)
    assert fields["lora_target"] == "model.layers.0.mlp.up_proj,model.layers.29.mlp.up_proj"
    count, names = built_count(lora_config_as_llamafactory_builds_it(fields), smollm_model)
    assert count == trial.trainable_params and names == set(fields["lora_target"].split(","))


def test_llamafactory_refuses_per_module_ranks_instead_of_flattening(smollm_job, tmp_path):
    trial = smollm_job.trial(lora({(0, "q"): 4, (1, "q"): 8}))
    with pytest.raises(ExportError) as refused:
        export_trial(*smollm_job.records(trial), "llamafactory", tmp_path / "out")
    assert str(refused.value) == (
        f"LLaMA-Factory has one global lora_rank and trial {trial.number} of job {smollm_job.job_id} uses "
        "ranks [4, 8] on different modules; export it with --format axolotl, peft, trl or autopeft"
    )
    assert not (tmp_path / "out").exists()


def test_both_stacks_carry_pissa_and_refuse_a_lora_they_would_silently_train_differently(
    smollm_job, smollm_model, tmp_path
):
    pissa = lora(grid((3,), ("q", "v")), rank=4, init="pissa")
    trial, fields, _ = exported(smollm_job, pissa, "axolotl", tmp_path)
    check_axolotl_schema(fields)
    assert fields["peft_init_lora_weights"] == "pissa"
    assert lora_config_as_axolotl_builds_it(fields).init_lora_weights == "pissa"
    trial, fields, _ = exported(smollm_job, pissa, "llamafactory", tmp_path)
    check_llamafactory_schema(fields)
    assert (fields["pissa_init"], fields["pissa_iter"]) == (True, -1)  # -1: the exact SVD the trial used
    config = lora_config_as_llamafactory_builds_it(fields)
    assert config.init_lora_weights == "pissa" and built_count(config, smollm_model)[0] == trial.trainable_params
    _, fields, _ = exported(smollm_job, lora(grid((3,), ("q",)), rank=4, init="olora"), "axolotl", tmp_path / "o")
    assert fields["peft_init_lora_weights"] == "olora"
    for fmt, stack, structure, what in [
        ("llamafactory", "LLaMA-Factory", lora(grid((3,), ("q",)), rank=4, init="olora"), "the olora init"),
        ("axolotl", "axolotl", lora(grid((3,), ("q",)), rank=4, variant="kasa"), "the KaSA variant"),
        ("llamafactory", "LLaMA-Factory", lora(grid((3,), ("q",)), rank=4, variant="kasa"), "the KaSA variant"),
    ]:
        refused = smollm_job.trial(structure)
        with pytest.raises(ExportError, match=f"^{stack} has no key for {what} of trial {refused.number} .*; "
                                              "export it with --format peft, trl or autopeft$"):
            export_trial(*smollm_job.records(refused), fmt, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("fmt, stack", [("axolotl", "axolotl"), ("llamafactory", "LLaMA-Factory")])
def test_stacks_refuse_what_they_cannot_train(smollm_job, mrpc_job, tmp_path, fmt, stack):
    mixed = smollm_job.trial(Structure(lora=LoraModules({(0, "q"): 4}), serial_adapter={1: 8}))
    with pytest.raises(ExportError, match=f"{stack} trains LoRA-family modules only .* uses serial_adapter; "
                                          "export it with --format autopeft"):
        export_trial(*smollm_job.records(mixed), fmt, tmp_path / "a")
    loha = smollm_job.trial(Structure(tuner=TunerModules("loha", 4, frozenset({(0, "q")}))))
    with pytest.raises(ExportError, match=f"{stack} trains LoRA-family modules only .* uses loha; "
                                          "export it with --format peft, trl or autopeft"):
        export_trial(*smollm_job.records(loha), fmt, tmp_path / "d")
    classifier = mrpc_job.trial(lora(grid(range(6), "qv")))
    with pytest.raises(ExportError, match=f"{stack} fine-tunes causal language models and job .* is classification"):
        export_trial(*mrpc_job.records(classifier), fmt, tmp_path / "b")
    fractional = smollm_job.trial(lora({(0, "q"): 1}, alpha_ratio=1.5))
    with pytest.raises(ExportError, match="lora_alpha is an integer and this trial's LoRA alpha is 1.5"):
        export_trial(*smollm_job.records(fractional), fmt, tmp_path / "c")
    assert not any(tmp_path.iterdir())
