"""``--format llamafactory``: the LoRA arguments of a LLaMA-Factory YAML (``llamafactory.yaml``).

Keys follow LLaMA-Factory's ``FinetuningArguments``/``LoraArguments``
(``src/llamafactory/hparams/finetuning_args.py``) and its model arguments; its adapter setup
(``src/llamafactory/model/adapter.py``) builds one ``LoraConfig`` with a single global
``lora_rank`` and passes ``lora_target`` (comma-separated) to peft as ``target_modules``.
So a structure is exported only when one rank holds it: its modules are named by leaf name when
that is exact on every layer, and by fully-qualified module name otherwise. Per-module ranks are
refused, never flattened. PiSSA is the one LoRA init it has a key for (``pissa_init``, with
``pissa_iter: -1`` for the exact SVD the trial used); the others are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from peft import LoraConfig, TaskType

from autopeft.errors import ExportError
from autopeft.export.lora_stacks import compact_targets, integer_alpha, lora_for_stack
from autopeft.export.source import ExportSource
from autopeft.export.validation import adapted_module_names, validate_on_base_model

STACK = "LLaMA-Factory"
FILE_NAME = "llamafactory.yaml"
INITS = ("default", "pissa")
"""LoRA inits LLaMA-Factory has keys for (``pissa_init``)."""
EXACT_PISSA = -1
"""``pissa_iter`` -1: PiSSA from an exact SVD, as the trial's, not the fast randomised one."""


def llamafactory_fields(source: ExportSource) -> dict[str, Any]:
    """The LLaMA-Factory arguments that reproduce the trial's LoRA modules."""
    lora = lora_for_stack(source, STACK, INITS)
    ranks = sorted(set(lora.ranks.values()))
    if len(ranks) > 1:
        raise ExportError(
            f"LLaMA-Factory has one global lora_rank and {source.describe()} uses ranks "
            f"{ranks} on different modules; export it with --format axolotl, peft, trl or autopeft"
        )
    compact = compact_targets(source, lora, allow_layers=False)
    targets = compact.modules if compact else sorted(adapted_module_names(source.structure, source.layout))
    return {
        "model_name_or_path": source.hub_id,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": ranks[0],
        "lora_alpha": integer_alpha(lora.alpha(ranks[0]), STACK, "lora_alpha"),
        "lora_dropout": lora.dropout,
        "lora_target": ",".join(targets),
        "use_dora": lora.variant == "dora",
        "use_rslora": lora.variant == "rslora",
        **({"pissa_init": True, "pissa_iter": EXACT_PISSA} if lora.init == "pissa" else {}),
        "output_dir": f"saves/autopeft-job{source.job.id}-trial{source.trial.number}",
    }


def lora_config_as_llamafactory_builds_it(fields: dict[str, Any]) -> LoraConfig:
    """The ``LoraConfig`` LLaMA-Factory's adapter setup builds from these arguments."""
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        inference_mode=False,
        r=fields["lora_rank"],
        target_modules=[item.strip() for item in fields["lora_target"].split(",")],
        lora_alpha=fields["lora_alpha"],
        lora_dropout=fields["lora_dropout"],
        use_rslora=fields["use_rslora"],
        use_dora=fields["use_dora"],
        init_lora_weights="pissa" if fields.get("pissa_init") and fields.get("pissa_iter") == EXACT_PISSA else True,
    )


def write_llamafactory(source: ExportSource, out_dir: Path) -> list[Path]:
    fields = llamafactory_fields(source)
    validate_on_base_model(lora_config_as_llamafactory_builds_it(fields), source)
    header = (
        f"# LoRA structure of {source.describe()}, exported by autopeft.\n"
        "# Add dataset:, template: and cutoff_len: for your data to train with llamafactory-cli train.\n"
    )
    path = out_dir / FILE_NAME
    path.write_text(header + yaml.safe_dump(fields, sort_keys=False))
    return [path]
