"""``--format axolotl``: the LoRA keys of an axolotl YAML config (``axolotl.yaml``).

Keys follow axolotl's config schema (``src/axolotl/utils/schemas/peft.py`` and ``model.py``) and
the way its loader turns them into a peft ``LoraConfig`` (``src/axolotl/loaders/adapter.py``):
``lora_r``/``lora_alpha`` are the common rank and alpha, ``lora_target_modules`` plus
``peft_layers_to_transform`` place the modules when that form is exact, and otherwise the modules
are named in full with ``lora_rank_pattern``/``lora_alpha_pattern`` for per-module ranks, and
``peft_init_lora_weights`` carries a LoRA init that needs no measurement (PiSSA, OLoRA, ...).
The YAML is validated by building the ``LoraConfig`` axolotl would build on the real base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from peft import LoraConfig, TaskType

from autopeft.export.lora_stacks import compact_targets, integer_alpha, lora_for_stack
from autopeft.export.source import ExportSource
from autopeft.export.validation import validate_on_base_model
from autopeft.injection.peft_modules import PEFT_INIT, lora_config

STACK = "axolotl"
FILE_NAME = "axolotl.yaml"
INITS = ("default", "gaussian", "orthogonal", "pissa", "olora")
"""LoRA inits axolotl passes to peft as they are (``peft_init_lora_weights``)."""


def axolotl_fields(source: ExportSource) -> dict[str, Any]:
    """The axolotl keys that reproduce the trial's LoRA modules."""
    lora = lora_for_stack(source, STACK, INITS)
    full = lora_config(lora, source.layout)
    fields: dict[str, Any] = {
        "base_model": source.hub_id,
        "adapter": "lora",
        "lora_r": full.r,
        "lora_alpha": integer_alpha(full.lora_alpha, STACK, "lora_alpha"),
        "lora_dropout": lora.dropout,
    }
    compact = compact_targets(source, lora, allow_layers=True)
    if compact is not None:
        fields["lora_target_modules"] = compact.modules
        if compact.layers is not None:
            fields["peft_layers_to_transform"] = compact.layers
    else:
        fields["lora_target_modules"] = sorted(full.target_modules)
        if full.rank_pattern:
            fields["lora_rank_pattern"] = dict(full.rank_pattern)
            fields["lora_alpha_pattern"] = {
                key: integer_alpha(alpha, STACK, "lora_alpha_pattern") for key, alpha in full.alpha_pattern.items()
            }
    if full.fan_in_fan_out:
        fields["lora_fan_in_fan_out"] = True
    fields["peft_use_dora"] = lora.variant == "dora"
    fields["peft_use_rslora"] = lora.variant == "rslora"
    if lora.init != "default":
        fields["peft_init_lora_weights"] = PEFT_INIT[lora.init]
    fields["output_dir"] = f"./outputs/autopeft-job{source.job.id}-trial{source.trial.number}"
    return fields


def lora_config_as_axolotl_builds_it(fields: dict[str, Any]) -> LoraConfig:
    """The ``LoraConfig`` axolotl's adapter loader builds from these keys (causal LM)."""
    return LoraConfig(
        r=fields["lora_r"],
        lora_alpha=fields["lora_alpha"],
        target_modules=fields["lora_target_modules"],
        layers_to_transform=fields.get("peft_layers_to_transform"),
        lora_dropout=fields["lora_dropout"],
        fan_in_fan_out=fields.get("lora_fan_in_fan_out", False),
        bias="none",
        task_type=TaskType.CAUSAL_LM,
        use_dora=fields["peft_use_dora"],
        use_rslora=fields["peft_use_rslora"],
        init_lora_weights=fields.get("peft_init_lora_weights", True),
        rank_pattern=fields.get("lora_rank_pattern", {}),
        alpha_pattern=fields.get("lora_alpha_pattern", {}),
    )


def write_axolotl(source: ExportSource, out_dir: Path) -> list[Path]:
    fields = axolotl_fields(source)
    validate_on_base_model(lora_config_as_axolotl_builds_it(fields), source)
    header = (
        f"# LoRA structure of {source.describe()}, exported by autopeft.\n"
        "# Add your datasets:, sequence_len:, micro_batch_size:, num_epochs: and learning_rate: to train.\n"
    )
    path = out_dir / FILE_NAME
    path.write_text(header + yaml.safe_dump(fields, sort_keys=False))
    return [path]
