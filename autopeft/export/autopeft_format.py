"""``--format autopeft``: autopeft's own config (``autopeft_config.json``), for every module type.

It names the base model and task head, holds the full :class:`Structure`, and records the layout
facts the structure needs (the module names at every place), so that
:func:`autopeft.apply` can put the structure into a user's model without the search space and
check that the model really is the one the trial ran on. Validation before writing applies the
config to the real base model the same way and compares the trainable count with the trial's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

import autopeft
from autopeft.allocation.lora_init import MeasuredInit
from autopeft.allocation.sparse_rankings import SparseRanking
from autopeft.errors import ExportError
from autopeft.space.layout import LayerLayout, ModelLayout, matrix_shape
from autopeft.space.structure import Structure
from autopeft.space.tuners import ranking_rule
from autopeft.tasks import TaskKind

if TYPE_CHECKING:  # the store and the model loaders stay out of autopeft.apply's imports
    from autopeft.export.source import ExportSource

CONFIG_NAME = "autopeft_config.json"
def init_file_name(init: str) -> str:
    """The file beside a config that holds a data-driven LoRA init's measurement (``autopeft_eva.safetensors``)."""
    return f"autopeft_{init}.safetensors"
"""Beside the config when the structure's LoRA starts from EVA: its A, one tensor per module."""
SPARSE_ENTRIES_NAME = "autopeft_sparse_entries.safetensors"
"""Beside the config when the structure is a sparse update with a measured rule: the flat indices
each matrix trains, one tensor per module."""
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TaskHeadSpec:
    """The head the structure was trained with: kind, outputs and (classification) label names."""

    kind: TaskKind
    num_labels: int
    label_names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "num_labels": self.num_labels, "label_names": list(self.label_names)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskHeadSpec:
        return cls(TaskKind(data["kind"]), int(data["num_labels"]), tuple(data.get("label_names", ())))


@dataclass(frozen=True)
class AutopeftConfig:
    """Everything needed to rebuild a trial's structure on its base model.

    Attributes:
        base_model: public (hub) id of the base model.
        model: the name autopeft resolved the model by (alias, folder or hub id).
        head: the task head.
        structure: the PEFT structure.
        layout: layout facts as JSON (see :func:`layout_facts`).
        trainable_params: trainable parameters of the structure on the base model, head included.
        task: how the job loaded its task (``source`` and options), or None.
        origin: where the structure came from (job, trial, proxy metrics), or None.
        autopeft_version: the version that wrote the config.
        lora_init: what the structure's LoRA modules start from when their init is data-driven
            (``eva``, ``corda``), each at its rank; saved beside the config as
            :func:`init_file_name`.
        sparse_entries: the entries sparse updates with a measured rule train, per module;
            saved beside the config as :data:`SPARSE_ENTRIES_NAME`.
    """

    base_model: str
    model: str
    head: TaskHeadSpec
    structure: Structure
    layout: dict[str, Any]
    trainable_params: int
    task: dict[str, Any] | None = None
    origin: dict[str, Any] | None = None
    autopeft_version: str = field(default=autopeft.__version__)
    lora_init: MeasuredInit | None = None
    sparse_entries: SparseRanking | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "autopeft",
            "format_version": FORMAT_VERSION,
            "autopeft_version": self.autopeft_version,
            "base_model": self.base_model,
            "model": self.model,
            "task_head": self.head.to_json(),
            "structure": self.structure.to_json(),
            "module_types": list(self.structure.module_types),
            "layout": self.layout,
            "trainable_params": self.trainable_params,
            "task": self.task,
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "config") -> AutopeftConfig:
        if data.get("format") != "autopeft" or data.get("format_version") != FORMAT_VERSION:
            raise ExportError(f"{where} is not an autopeft config of format version {FORMAT_VERSION}")
        try:
            return cls(
                base_model=data["base_model"],
                model=data["model"],
                head=TaskHeadSpec.from_json(data["task_head"]),
                structure=Structure.from_json(data["structure"]),
                layout=data["layout"],
                trainable_params=int(data["trainable_params"]),
                task=data.get("task"),
                origin=data.get("origin"),
                autopeft_version=data["autopeft_version"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{where} is malformed: {type(exc).__name__} {exc}") from None

    def save(self, directory: Path) -> list[Path]:
        """Write the config (and the measured tensors it needs); returns the files written."""
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        written = [path]
        init_file = init_file_name(self.lora_init.init) if self.lora_init is not None else None
        for name, measured in ((init_file, self.lora_init), (SPARSE_ENTRIES_NAME, self.sparse_entries)):
            if measured is not None:
                written.append(Path(directory) / name)
                written[-1].write_bytes(measured.to_bytes())
        return written

    @classmethod
    def load(cls, path: str | Path) -> AutopeftConfig:
        """Read a config file, or the ``autopeft_config.json`` in a folder."""
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / CONFIG_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ExportError(f"no autopeft config at {path}") from None
        except (OSError, ValueError) as exc:
            raise ExportError(f"cannot read autopeft config {path}: {exc}") from None
        config = cls.from_json(data, str(path))
        lora = config.structure.lora
        if lora is not None and lora.starts_from_measurement:
            measured = _sidecar(path, init_file_name(lora.init), f"starts LoRA from {lora.init}")
            config = replace(config, lora_init=MeasuredInit.from_bytes(lora.init, measured))
        rule = ranking_rule(config.structure)
        if rule is not None:
            entries = _sidecar(path, SPARSE_ENTRIES_NAME, f"trains entries ranked by {rule}")
            config = replace(config, sparse_entries=SparseRanking.from_bytes(rule, entries))
        return config


def _sidecar(config_path: Path, name: str, why: str) -> bytes:
    """The bytes of the measured-tensor file ``name`` beside a config; ExportError when it is missing."""
    path = config_path.parent / name
    if not path.is_file():
        raise ExportError(f"{config_path} {why} and there is no {name} beside it")
    return path.read_bytes()


def layout_facts(layout: ModelLayout) -> dict[str, Any]:
    """The parts of a layout that name modules; shapes and counts are read from the model."""
    return {
        "model_type": layout.model_type,
        "family": layout.family,
        "hidden_size": layout.hidden_size,
        "feedforward_roles": sorted(layout.feedforward_roles),
        "head_modules": list(layout.head_modules),
        "layers": [
            {
                "path": layer.path,
                "modules": {role: shape.name for role, shape in layer.matrices.items()},
                "ffn_input": layer.ffn_input,
                "ffn_output": layer.ffn_output,
                "attention": layer.attention,
                "kv_width": layer.kv_width,
                "norms": list(layer.norms),
            }
            for layer in layout.layers
        ],
    }


def layout_on(model: nn.Module, facts: dict[str, Any]) -> ModelLayout:
    """Rebuild a layout from its facts on ``model``; ExportError naming a module the model lacks."""
    modules = dict(model.named_modules())
    named = [name for name in _named_modules(facts) if name not in modules]
    if named:
        raise ExportError(
            f"the model has no module '{named[0]}' that the autopeft config names"
            f"{f' (and {len(named) - 1} more)' if len(named) > 1 else ''}; is it the config's base model?"
        )
    head = tuple(facts["head_modules"])
    return ModelLayout(
        model_type=facts["model_type"],
        family=facts["family"],
        hidden_size=facts["hidden_size"],
        layers=tuple(
            LayerLayout(
                index=index,
                path=layer["path"],
                matrices={role: matrix_shape(name, modules[name]) for role, name in layer["modules"].items()},
                ffn_input=layer["ffn_input"],
                ffn_output=layer["ffn_output"],
                attention=layer["attention"],
                kv_width=layer["kv_width"],
                norms={name: sum(p.numel() for p in modules[name].parameters()) for name in layer.get("norms", ())},
            )
            for index, layer in enumerate(facts["layers"])
        ),
        head_modules=head,
        head_params=sum(p.numel() for name in head for p in modules[name].parameters()),
        total_params=sum(p.numel() for p in model.parameters()),
        feedforward_roles=frozenset(facts["feedforward_roles"]),
    )


def _named_modules(facts: dict[str, Any]) -> list[str]:
    names = list(facts["head_modules"])
    for layer in facts["layers"]:
        names += layer["modules"].values()
        names += [layer[key] for key in ("ffn_input", "ffn_output", "attention") if layer[key]]
        names += layer.get("norms", [])
    return names


def config_of(source: ExportSource) -> AutopeftConfig:
    """The autopeft config of an export source's trial (not yet validated)."""
    spec = source.job.spec
    info = spec["task_info"]
    return AutopeftConfig(
        base_model=source.hub_id,
        model=spec["model"],
        head=TaskHeadSpec(source.task_kind, source.stored.head.num_labels, tuple(info["label_names"])),
        structure=source.structure,
        layout=layout_facts(source.layout),
        trainable_params=source.trial.trainable_params,
        task={"source": spec["task"], **spec.get("task_options", {}), "metric": info["metric"]},
        origin={"job": source.job.id, "trial": source.trial.number, "proxy_metrics": source.trial.values},
        lora_init=source.lora_init.restricted_to(source.structure.lora) if source.lora_init is not None else None,
        sparse_entries=source.ranking.restricted_to(source.structure, source.layout)
        if source.ranking is not None else None,
    )


def write_autopeft(source: ExportSource, out_dir: Path) -> list[Path]:
    # Imported here: autopeft.api builds on this module.
    from autopeft.api import apply
    from autopeft.models import load_base_model

    config = config_of(source)
    applied = apply(load_base_model(source.stored.model, source.stored.head), config)
    applied.remove()
    return config.save(out_dir)
