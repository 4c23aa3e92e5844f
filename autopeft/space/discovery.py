"""Find the layout of a model the registry does not list, from its module tree.

Three steps, all on the module tree (a meta-device skeleton will do):

1. **Blocks**: the repeated transformer blocks are the outermost ModuleLists whose children are
   all of one class and hold at least two linear layers each (T5: encoder blocks, then decoder
   blocks). Such lists nested inside a block (mixture-of-experts expert lists) are not blocks.
2. **Roles**: each linear layer (``nn.Linear`` or GPT-2's ``Conv1D``) in the first block of every
   list gets a role from its leaf name and the attention / feed-forward context of its path
   (:data:`LEAF_ROLES`); cross-attention roles are prefixed ``cross_``. Fused projections keep
   their own roles: ``qkv`` (``qkv_proj``, ``c_attn``, ``query_key_value``) and ``gate_up``
   (``gate_up_proj``). A linear layer no rule names keeps its leaf name as its role, so a space
   can still name it; linear layers inside a nested ModuleList (experts) are skipped and reported.
3. **FFN boundary** (for bottleneck adapters): the FFN input is the parent of the ``up`` (or
   ``gate_up``) matrix, or that matrix itself when it sits directly in the block (OPT's ``fc1``);
   the FFN output is that same parent when it also holds ``down`` (LLaMA's ``mlp``), otherwise
   the ``down`` matrix itself (BERT's ``output.dense``).

Written by hand: neither transformers nor peft exposes a model's block and role layout (peft
keeps a per-model-type table of default target modules, which is the registry's job here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn
from transformers.pytorch_utils import Conv1D

from autopeft.errors import SpaceError
from autopeft.space.architectures import Architecture

LINEAR_TYPES = (nn.Linear, Conv1D)

# (context, leaf names) -> role. Context "any" matches everywhere; the first matching rule wins.
LEAF_ROLES: tuple[tuple[str, frozenset[str], str], ...] = (
    ("any", frozenset({"qkv", "qkv_proj", "c_attn", "query_key_value", "wqkv", "w_pack", "in_proj"}), "qkv"),
    ("any", frozenset({"q", "q_proj", "query", "q_lin", "wq"}), "q"),
    ("any", frozenset({"k", "k_proj", "key", "k_lin", "wk"}), "k"),
    ("any", frozenset({"v", "v_proj", "value", "v_lin", "wv"}), "v"),
    ("attention", frozenset({"o", "o_proj", "out_proj", "out_lin", "dense", "c_proj", "wo", "out"}), "o"),
    ("any", frozenset({"gate_up_proj"}), "gate_up"),
    ("any", frozenset({"gate_proj"}), "gate"),
    ("any", frozenset({"up_proj", "fc1", "c_fc", "lin1", "dense_h_to_4h", "fc_in"}), "up"),
    ("any", frozenset({"down_proj", "fc2", "lin2", "dense_4h_to_h", "fc_out"}), "down"),
    ("ffn", frozenset({"w1", "wi_0"}), "gate"),
    ("ffn", frozenset({"w3", "wi", "wi_1"}), "up"),
    ("ffn", frozenset({"w2", "wo", "c_proj"}), "down"),
    ("intermediate", frozenset({"dense"}), "up"),
    ("output", frozenset({"dense"}), "down"),
)  # fmt: skip

_ATTENTION = re.compile(r"att", re.IGNORECASE)
_CROSS = re.compile(r"cross|encdec|encoder_attn", re.IGNORECASE)
_FFN = re.compile(r"mlp|ffn|feed_?forward|dense_?relu_?dense|intermediate|^output$", re.IGNORECASE)


@dataclass(frozen=True)
class Discovery:
    """What was found in a model: the layout to read it with, and what was left out.

    Attributes:
        architecture: the discovered layout (family ``discovered``).
        unnamed: linear layers no role rule names; they keep their leaf name as their role.
        skipped: linear layers inside nested ModuleLists (e.g. experts), not searchable.
    """

    architecture: Architecture
    unnamed: tuple[str, ...]
    skipped: tuple[str, ...]


def discover_architecture(model: nn.Module) -> Discovery:
    """The layout of ``model`` found from its module tree; SpaceError when it has no blocks."""
    modules = dict(model.named_modules())
    block_lists = _block_lists(modules)
    if not block_lists:
        raise SpaceError(
            f"model type '{model.config.model_type}': found no repeated blocks (a ModuleList of same-class "
            "modules with linear layers); declare its layers and roles under 'architecture:' in the space file"
        )
    roles: dict[str, list[str]] = {}
    unnamed: list[str] = []
    skipped: list[str] = []
    for list_name in block_lists:
        block = modules[f"{list_name}.0"]
        repeated = [name for name, module in block.named_modules() if name and _is_repeated(module)]
        for path, module in block.named_modules():
            if not isinstance(module, LINEAR_TYPES):
                continue
            if any(path.startswith(inner + ".") for inner in repeated):
                skipped.append(path)
                continue
            role = role_of(path)
            if role is None:
                role = path.rsplit(".", 1)[-1]
                unnamed.append(path)
            _add(roles, role, path)
    roles = dict(sorted(roles.items(), key=lambda item: _canonical_rank(item[0])))
    ffn_input, ffn_output = _ffn_boundary(roles)
    architecture = Architecture(
        family="discovered",
        model_types=(model.config.model_type,),
        layer_lists=tuple(block_lists),
        roles={role: tuple(paths) for role, paths in roles.items()},
        ffn_input=ffn_input,
        ffn_output=ffn_output,
        feedforward_roles=frozenset({"down"}),
    )
    return Discovery(architecture, tuple(dict.fromkeys(unnamed)), tuple(dict.fromkeys(skipped)))


def role_of(path: str) -> str | None:
    """The role of the linear layer at ``path`` (relative to its block), or None if no rule names it."""
    *parents, leaf = path.split(".")
    contexts = {"any"}
    if any(_ATTENTION.search(p) for p in parents):
        contexts.add("attention")
    elif any(_FFN.search(p) for p in parents):
        contexts.add("ffn")
    contexts.update(p.lower() for p in parents if p.lower() in ("intermediate", "output"))
    for context, leaves, role in LEAF_ROLES:
        if context in contexts and leaf.lower() in leaves:
            cross = role in ("q", "k", "v", "o", "qkv") and any(_CROSS.search(p) for p in parents)
            return f"cross_{role}" if cross else role
    return None


def _block_lists(modules: Mapping[str, nn.Module]) -> list[str]:
    found: list[str] = []
    for name, module in modules.items():
        if any(name.startswith(outer + ".") for outer in found):
            continue
        if _is_repeated(module) and sum(isinstance(m, LINEAR_TYPES) for m in module[0].modules()) >= 2:
            found.append(name)
    return found


def _is_repeated(module: nn.Module) -> bool:
    """A ModuleList of same-class modules holding linear layers (blocks, or experts inside a block)."""
    if not isinstance(module, nn.ModuleList) or len(module) == 0:
        return False
    children = list(module)
    has_linear = any(isinstance(m, LINEAR_TYPES) for m in children[0].modules())
    return has_linear and all(type(child) is type(children[0]) for child in children)


CANONICAL_ORDER = ("q", "k", "v", "qkv", "o", "gate", "up", "gate_up", "down")


def _canonical_rank(role: str) -> tuple[int, int]:
    """Sort key: canonical roles in CANONICAL_ORDER, then cross-attention roles, then unnamed ones."""
    base = role.removeprefix("cross_")
    group = 0 if role == base else 1
    if base not in CANONICAL_ORDER:
        return 2, 0
    return group, CANONICAL_ORDER.index(base)


def _add(roles: dict[str, list[str]], role: str, path: str) -> None:
    paths = roles.setdefault(role, [])
    if path not in paths:
        paths.append(path)


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _ffn_boundary(roles: Mapping[str, list[str]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ups = roles.get("up") or roles.get("gate_up") or []
    downs = roles.get("down", [])
    if not ups or not downs:
        return (), ()
    # A matrix directly in the block (OPT's fc1) is its own FFN boundary.
    inputs = tuple(dict.fromkeys(_parent(path) or path for path in ups))
    shared = set(inputs) <= {_parent(path) for path in downs}
    return inputs, inputs if shared else tuple(downs)
