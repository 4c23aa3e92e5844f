"""What LoRA-only training stacks (axolotl, LLaMA-Factory) can hold, and how to name the modules.

Both stacks fine-tune causal language models with one peft ``LoraConfig`` that they build from
their own YAML keys. A trial's LoRA modules are named compactly (``q_proj`` plus layer indices)
when peft's own matching selects exactly those modules from that form, and by fully-qualified
module names otherwise; nothing is ever widened or flattened.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from peft import LoraConfig
from peft.tuners.tuners_utils import check_target_module_exists

from autopeft.errors import ExportError
from autopeft.export.peft_format import fits_one_peft_adapter, refuse_beyond_config
from autopeft.export.source import ExportSource
from autopeft.export.validation import adapted_module_names
from autopeft.models import build_skeleton
from autopeft.space.structure import LoraModules, Place
from autopeft.tasks import TaskKind


def lora_for_stack(source: ExportSource, stack: str, inits: Collection[str]) -> LoraModules:
    """The trial's LoRA modules, or ExportError when ``stack`` cannot train this trial at all.

    ``inits`` are the LoRA initialisations the stack has a key for; its keys name DoRA and rsLoRA
    but not KaSA. A trial that needs another is refused: exported without it, the stack would
    silently train a different LoRA with the same parameter count.
    """
    if source.task_kind is not TaskKind.CAUSAL_LM:
        raise ExportError(
            f"{stack} fine-tunes causal language models and job {source.job.id}'s task is "
            f"{source.task_kind}; export {source.describe()} with --format peft, trl or autopeft"
        )
    structure = source.structure
    others = [structure.tuner.method if name == "tuner" else name for name in structure.module_types if name != "lora"]
    if others or structure.lora is None:
        pointer = "peft, trl or autopeft" if fits_one_peft_adapter(structure) else "autopeft"
        raise ExportError(
            f"{stack} trains LoRA-family modules only and {source.describe()} uses "
            f"{', '.join(others) or 'no LoRA modules'}; export it with --format {pointer}"
        )
    refuse_beyond_config(source, stack)
    lora = structure.lora
    missing = [f"the {lora.init} init"] if lora.init not in inits else []
    if lora.variant == "kasa":
        missing.append("the KaSA variant")
    if missing:
        raise ExportError(
            f"{stack} has no key for {' or '.join(missing)} of {source.describe()}; export it with --format peft, "
            "trl or autopeft"
        )
    return lora


def integer_alpha(alpha: float, stack: str, key: str) -> int:
    """``alpha`` as the integer the stack's schema declares, or ExportError when it is fractional."""
    if not float(alpha).is_integer():
        raise ExportError(f"{stack}'s {key} is an integer and this trial's LoRA alpha is {alpha}; use --format peft")
    return int(alpha)


@dataclass(frozen=True)
class CompactTargets:
    """Target keys matched as module-name suffixes, optionally limited to some layer indices."""

    modules: list[str]
    layers: list[int] | None


def compact_targets(source: ExportSource, lora: LoraModules, *, allow_layers: bool) -> CompactTargets | None:
    """Short target keys (``q_proj``, or ``attention.self.query``) that select exactly the trial's
    modules by peft's matching, with layer indices when ``allow_layers``; None when none do.

    Only uniform-rank structures that cover every chosen role in every chosen layer qualify.
    """
    if len(set(lora.ranks.values())) != 1:
        return None
    layout = source.layout
    layers = sorted({layer for layer, _ in lora.ranks})
    roles = {role for _, role in lora.ranks}
    grid = {(layer, role) for layer in layers for role in roles if layout.matrix(layer, role) is not None}
    if grid != set(lora.ranks):
        return None
    every_layer = layers == list(range(layout.num_layers))
    if not (every_layer or allow_layers):
        return None
    wanted = adapted_module_names(source.structure, layout)
    names = [name for name, _ in build_skeleton(source.stored.model, source.stored.head).named_modules()]
    for keys in (_leaf_keys(wanted), _layer_relative_keys(grid, source)):
        candidate = CompactTargets(keys, None if every_layer else layers)
        if _selected(candidate, names) == wanted:
            return candidate
    return None


def _leaf_keys(module_names: set[str]) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name in module_names})


def _layer_relative_keys(places: set[Place], source: ExportSource) -> list[str]:
    layout = source.layout
    return sorted(
        {layout.matrix(layer, role).name.removeprefix(layout.layers[layer].path + ".") for layer, role in places}
    )


def _selected(targets: CompactTargets, module_names: Sequence[str]) -> set[str]:
    """The module names peft's own matching picks for ``targets``."""
    probe = LoraConfig(target_modules=targets.modules, layers_to_transform=targets.layers)
    return {name for name in module_names if check_target_module_exists(probe, name)}
