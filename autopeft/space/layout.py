"""The concrete layout of one model: its layers, the shape of every role's matrix, its task head.

A :class:`ModelLayout` is read once from the model's module tree — usually a skeleton on the meta
device, so no weights are loaded — and is all the exact cost model and the injectors need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn
from transformers.pytorch_utils import Conv1D

from autopeft.errors import SpaceError
from autopeft.space.architectures import Architecture, architecture_for
from autopeft.space.discovery import discover_architecture

# peft's SEQ_CLS task type trains these head modules in full (modules_to_save); autopeft counts
# and trains exactly the same ones so that exports reproduce the trial's trainable count.
HEAD_MODULE_NAMES = ("classifier", "score")


@dataclass(frozen=True)
class MatrixShape:
    """One weight matrix a module can attach to.

    Attributes:
        name: fully-qualified module name in the task model, e.g.
            ``bert.encoder.layer.0.attention.self.query``.
        in_features, out_features: the matrix maps ``(..., in_features) -> (..., out_features)``.
        conv1d: True for GPT-2's ``Conv1D`` (weight stored transposed, peft's fan_in_fan_out).
        bias: whether the layer has a bias vector (``out_features`` long).
    """

    name: str
    in_features: int
    out_features: int
    conv1d: bool = False
    bias: bool = False

    @property
    def numel(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class LayerLayout:
    """One transformer layer: where it is and which role matrices it has.

    Attributes:
        index: position in :attr:`ModelLayout.layers`.
        path: fully-qualified module name of the layer.
        matrices: role -> matrix shape.
        ffn_input, ffn_output: modules whose input / output is the FFN's (see Architecture).
        attention: the self-attention module (parent of the key projection), where prefixes go.
        kv_width: width of one position's keys (= values) over all key/value heads; a prefix
            of length L adds 2 * L * kv_width parameters.
        norms: fully-qualified names of the layer's normalisation modules -> their parameter
            count (what LN tuning trains).
    """

    index: int
    path: str
    matrices: Mapping[str, MatrixShape]
    ffn_input: str | None
    ffn_output: str | None
    attention: str | None
    kv_width: int
    norms: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelLayout:
    """Everything about a model that PEFT placement and exact costs depend on.

    Attributes:
        model_type: ``config.model_type``.
        family: the architecture family the layout was read with.
        hidden_size: width of the residual stream (bottleneck adapters and prefixes act on it).
        layers: all transformer layers in forward order (T5: encoder blocks then decoder blocks).
        head_modules: fully-qualified names of the task-head modules trained in full.
        head_params: number of parameters in those modules.
        total_params: parameters of the whole task model (tied weights counted once).
        feedforward_roles: roles whose IA3 vector scales the input rather than the output.
    """

    model_type: str
    family: str
    hidden_size: int
    layers: tuple[LayerLayout, ...]
    head_modules: tuple[str, ...]
    head_params: int
    total_params: int
    feedforward_roles: frozenset[str]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def roles(self) -> tuple[str, ...]:
        """Roles present in at least one layer, in registry order."""
        seen: dict[str, None] = {}
        for layer in self.layers:
            seen.update(dict.fromkeys(layer.matrices))
        return tuple(seen)

    def matrix(self, layer: int, role: str) -> MatrixShape | None:
        return self.layers[layer].matrices.get(role)

    def role_aliases(self) -> dict[str, str]:
        """Leaf module names (``query``, ``q_proj``) -> canonical role, for spaces that use them."""
        aliases = {}
        for layer in self.layers:
            for role, shape in layer.matrices.items():
                aliases.setdefault(shape.name.rsplit(".", 1)[-1], role)
        return aliases


def read_layout(model: nn.Module, architecture: Architecture | None = None) -> ModelLayout:
    """Read the layout of ``model`` (real or on the meta device).

    With no ``architecture``, the registry entry for ``config.model_type`` is used; a model type
    the registry does not list, or whose entry does not fit, is read with the layout discovered
    from its module tree (family ``discovered``). SpaceError when neither works.
    """
    if architecture is not None:
        return _read_with(model, architecture)
    try:
        return _read_with(model, architecture_for(model.config.model_type))
    except SpaceError as registry_error:
        try:
            return _read_with(model, discover_architecture(model).architecture)
        except SpaceError as discovery_error:
            raise SpaceError(f"{registry_error}; discovery: {discovery_error}") from None


def _read_with(model: nn.Module, arch: Architecture) -> ModelLayout:
    modules = dict(model.named_modules())
    layer_paths = [
        f"{list_name}.{i}"
        for list_name in _find_layer_lists(modules, arch)
        for i in range(len(modules[list_name]))
    ]
    hidden = _hidden_size(model)
    layers = tuple(_read_layer(i, path, modules, arch, hidden) for i, path in enumerate(layer_paths))
    found_roles = {role for layer in layers for role in layer.matrices}
    missing = [role for role in arch.roles if role not in found_roles and not role.startswith("cross_")]
    if not layers or missing:
        what = ", ".join(missing or arch.roles)
        raise SpaceError(
            f"model type '{model.config.model_type}': could not find roles {what} "
            f"(layers looked for under {', '.join(arch.layer_lists)}); declare them under "
            "'architecture:' in the space file"
        )
    head = tuple(name for name in HEAD_MODULE_NAMES if name in modules)
    return ModelLayout(
        model_type=model.config.model_type,
        family=arch.family,
        hidden_size=hidden,
        layers=layers,
        head_modules=head,
        head_params=sum(p.numel() for name in head for p in modules[name].parameters()),
        total_params=sum(p.numel() for p in model.parameters()),
        feedforward_roles=arch.feedforward_roles,
    )


def _find_layer_lists(modules: Mapping[str, nn.Module], arch: Architecture) -> list[str]:
    found = []
    for suffix in arch.layer_lists:
        matches = [
            name
            for name, module in modules.items()
            if isinstance(module, nn.ModuleList) and (name == suffix or name.endswith("." + suffix))
        ]
        if matches:
            found.append(min(matches, key=len))
    return found


def _read_layer(
    index: int, path: str, modules: Mapping[str, nn.Module], arch: Architecture, hidden: int
) -> LayerLayout:
    matrices = {}
    for role, candidates in arch.roles.items():
        name = _first_present(path, candidates, modules)
        if name is not None:
            matrices[role] = matrix_shape(name, modules[name])
    return LayerLayout(
        index=index,
        path=path,
        matrices=matrices,
        ffn_input=_first_present(path, arch.ffn_input, modules),
        ffn_output=_first_present(path, arch.ffn_output, modules),
        attention=_attention_module(matrices),
        kv_width=_kv_width(matrices, hidden),
        norms=_norms(path, modules),
    )


def _norms(path: str, modules: Mapping[str, nn.Module]) -> dict[str, int]:
    """Normalisation modules inside the layer (LayerNorm, RMSNorm and model-specific norms)."""
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in modules.items()
        if name.startswith(path + ".") and "norm" in type(module).__name__.lower()
        and any(True for _ in module.parameters())
    }  # fmt: skip


def _attention_module(matrices: Mapping[str, MatrixShape]) -> str | None:
    key = matrices.get("k") or matrices.get("qkv")
    return None if key is None else key.name.rpartition(".")[0]


def _kv_width(matrices: Mapping[str, MatrixShape], hidden: int) -> int:
    if "k" in matrices:
        return matrices["k"].out_features
    if "qkv" in matrices:  # queries are hidden wide; keys and values share the rest (GQA, MQA)
        return (matrices["qkv"].out_features - hidden) // 2
    return hidden


def _first_present(path: str, candidates: tuple[str, ...], modules: Mapping[str, nn.Module]) -> str | None:
    return next((f"{path}.{c}" for c in candidates if f"{path}.{c}" in modules), None)


def matrix_shape(name: str, module: nn.Module) -> MatrixShape:
    """The shape of the linear layer ``module`` (named ``name``); SpaceError for anything else."""
    if isinstance(module, nn.Linear):
        return MatrixShape(name, module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, Conv1D):
        in_features, out_features = module.weight.shape
        return MatrixShape(name, in_features, out_features, conv1d=True, bias=module.bias is not None)
    raise SpaceError(f"{name} is a {type(module).__name__}, not a linear layer a PEFT module can attach to")


def _hidden_size(model: nn.Module) -> int:
    config = model.config
    for attr in ("hidden_size", "d_model", "n_embd", "dim"):
        if isinstance(getattr(config, attr, None), int):
            return getattr(config, attr)
    raise SpaceError(f"model type '{config.model_type}' declares no hidden size in its config")
