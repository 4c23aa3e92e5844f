"""``--format peft``: an ``adapter_config.json`` written by peft's own config class.

The config is validated before anything is written: peft builds it on the real base model and
must report exactly the trial's trainable parameters, on exactly the trial's target modules.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

from peft import LoraConfig, TaskType, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer

from autopeft.errors import ExportError
from autopeft.injection.peft_modules import lora_config
from autopeft.models import load_base_model
from autopeft.scheduler.spec import StoredJob
from autopeft.space.structure import Structure
from autopeft.store import TrialRecord
from autopeft.tasks import TaskKind


def peft_config_of(trial: TrialRecord, job: StoredJob) -> LoraConfig:
    """The LoraConfig that rebuilds ``trial``'s structure; ExportError when peft cannot hold it."""
    structure = Structure.from_json(trial.structure)
    others = [name for name in structure.module_types if name != "lora"]
    if others or structure.lora is None:
        raise ExportError(
            f"trial {trial.number} uses {', '.join(others) or 'no LoRA modules'}, which a single PEFT "
            "adapter config cannot hold; export it with --format autopeft"
        )
    task_type = TaskType.CAUSAL_LM if job.head.kind is TaskKind.CAUSAL_LM else TaskType.SEQ_CLS
    return lora_config(
        structure.lora,
        job.space.layout,
        task_type=task_type,
        base_model_name_or_path=job.model.hub_id,
    )


def validate_on_base_model(config: LoraConfig, trial: TrialRecord, job: StoredJob) -> None:
    """Build the adapter with peft on the real base model; the count and modules must match."""
    # get_peft_model rewrites base_model_name_or_path to the local folder: validate a copy.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(load_base_model(job.model, job.head), copy.deepcopy(config))
    trainable, _ = model.get_nb_trainable_parameters()
    if trainable != trial.trainable_params:
        raise ExportError(
            f"peft builds {trainable} trainable parameters from this config, the trial reported "
            f"{trial.trainable_params}; nothing written"
        )
    adapted = {
        name.removeprefix("base_model.model.")
        for name, module in model.named_modules()
        if isinstance(module, BaseTunerLayer)
    }
    if adapted != set(config.target_modules):
        raise ExportError(f"peft adapted {sorted(adapted)} instead of {sorted(config.target_modules)}; nothing written")


def write_peft(trial: TrialRecord, job: StoredJob, out_dir: Path) -> list[Path]:
    config = peft_config_of(trial, job)
    validate_on_base_model(config, trial, job)
    config.save_pretrained(str(out_dir))
    return [out_dir / "adapter_config.json"]
