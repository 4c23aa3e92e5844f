"""Where the PEFT-relevant modules of each model family live.

The registry below is a set of overrides: a model whose type it does not list (or whose layout
does not match its entry) is read by :mod:`autopeft.space.discovery` from its own module tree.
A family names the ModuleLists that hold its transformer layers and, for every *role* (a
canonical name for a weight matrix such as ``q`` or ``down``), the candidate paths of that matrix
relative to one layer. A role may be missing from some layers (T5's cross-attention exists only
in decoder blocks). Spaces name roles either canonically or by the module's own leaf name
(``query``, ``q_proj``, ``c_attn``).

Roles:
    q, k, v, o    attention query / key / value / output projections
    qkv           fused query-key-value projection (GPT-2's ``c_attn``, Phi-3's ``qkv_proj``)
    cross_q, ...  encoder-decoder cross-attention projections (T5 decoder)
    gate, up      feed-forward input projections (``gate`` only in gated FFNs)
    gate_up       fused gate and up projection (Phi-3's ``gate_up_proj``)
    down          feed-forward output projection

A space that names a role the model only has fused (``q`` on Phi-3) gets the fused matrix
(:data:`FUSED_INTO`): PEFT modules then act on all of its parts, as peft does when it targets
``qkv_proj``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from autopeft.errors import SpaceError

FUSED_INTO = {"q": "qkv", "k": "qkv", "v": "qkv", "gate": "gate_up", "up": "gate_up"}
"""Role -> the fused role that holds it in models that fuse projections."""


@dataclass(frozen=True)
class Architecture:
    """The module layout of one model family.

    Attributes:
        family: registry key, e.g. ``"bert"``.
        model_types: ``config.model_type`` values that use this layout.
        layer_lists: dotted suffixes of the ModuleLists holding the layers, in forward order
            (T5: encoder blocks, then decoder blocks).
        roles: role -> candidate paths relative to a layer; the first that exists is used.
        ffn_input: path (relative to a layer) of the module whose *input* is the FFN input.
        ffn_output: path of the module whose *output* is the FFN output before the residual add.
        feedforward_roles: roles whose IA3 vector scales the input (peft's feedforward_modules).
    """

    family: str
    model_types: tuple[str, ...]
    layer_lists: tuple[str, ...]
    roles: Mapping[str, tuple[str, ...]]
    ffn_input: tuple[str, ...] = ()
    ffn_output: tuple[str, ...] = ()
    feedforward_roles: frozenset[str] = field(default_factory=frozenset)


_BERT_ROLES = {
    "q": ("attention.self.query",),
    "k": ("attention.self.key",),
    "v": ("attention.self.value",),
    "o": ("attention.output.dense",),
    "up": ("intermediate.dense",),
    "down": ("output.dense",),
}

_LLAMA_ROLES = {
    "q": ("self_attn.q_proj",),
    "k": ("self_attn.k_proj",),
    "v": ("self_attn.v_proj",),
    "o": ("self_attn.o_proj",),
    "gate": ("mlp.gate_proj",),
    "up": ("mlp.up_proj",),
    "down": ("mlp.down_proj",),
}

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        family="bert",
        model_types=("bert", "roberta", "xlm-roberta", "electra", "camembert", "mpnet"),
        layer_lists=("encoder.layer",),
        roles=_BERT_ROLES,
        ffn_input=("intermediate",),
        ffn_output=("output.dense",),
        feedforward_roles=frozenset({"down"}),
    ),
    Architecture(
        family="distilbert",
        model_types=("distilbert",),
        layer_lists=("transformer.layer",),
        roles={
            "q": ("attention.q_lin",),
            "k": ("attention.k_lin",),
            "v": ("attention.v_lin",),
            "o": ("attention.out_lin",),
            "up": ("ffn.lin1",),
            "down": ("ffn.lin2",),
        },
        ffn_input=("ffn",),
        ffn_output=("ffn",),
        feedforward_roles=frozenset({"down"}),
    ),
    Architecture(
        family="gpt2",
        model_types=("gpt2",),
        layer_lists=("h",),
        roles={
            "qkv": ("attn.c_attn",),
            "o": ("attn.c_proj",),
            "up": ("mlp.c_fc",),
            "down": ("mlp.c_proj",),
        },
        ffn_input=("mlp",),
        ffn_output=("mlp",),
        feedforward_roles=frozenset({"down"}),
    ),
    Architecture(
        family="llama",
        model_types=("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"),
        layer_lists=("layers",),
        roles=_LLAMA_ROLES,
        ffn_input=("mlp",),
        ffn_output=("mlp",),
        feedforward_roles=frozenset({"down"}),
    ),
    Architecture(
        family="t5",
        model_types=("t5", "mt5", "umt5"),
        layer_lists=("encoder.block", "decoder.block"),
        roles={
            "q": ("layer.0.SelfAttention.q",),
            "k": ("layer.0.SelfAttention.k",),
            "v": ("layer.0.SelfAttention.v",),
            "o": ("layer.0.SelfAttention.o",),
            "cross_q": ("layer.1.EncDecAttention.q",),
            "cross_k": ("layer.1.EncDecAttention.k",),
            "cross_v": ("layer.1.EncDecAttention.v",),
            "cross_o": ("layer.1.EncDecAttention.o",),
            "gate": ("layer.1.DenseReluDense.wi_0", "layer.2.DenseReluDense.wi_0"),
            "up": (
                "layer.1.DenseReluDense.wi",
                "layer.1.DenseReluDense.wi_1",
                "layer.2.DenseReluDense.wi",
                "layer.2.DenseReluDense.wi_1",
            ),
            "down": ("layer.1.DenseReluDense.wo", "layer.2.DenseReluDense.wo"),
        },
        ffn_input=("layer.1.DenseReluDense", "layer.2.DenseReluDense"),
        ffn_output=("layer.1.DenseReluDense", "layer.2.DenseReluDense"),
        feedforward_roles=frozenset({"down"}),
    ),
)


def declared_architecture(layers: list[str], roles: Mapping[str, str | list[str]], *,
                          ffn_input: str | None = None, ffn_output: str | None = None,
                          feedforward_roles: list[str] = ()) -> Architecture:
    """An architecture declared in a space file (``architecture:``) for an unregistered family."""
    return Architecture(
        family="declared",
        model_types=(),
        layer_lists=tuple(layers),
        roles={role: (paths,) if isinstance(paths, str) else tuple(paths) for role, paths in roles.items()},
        ffn_input=(ffn_input,) if ffn_input else (),
        ffn_output=(ffn_output,) if ffn_output else (),
        feedforward_roles=frozenset(feedforward_roles),
    )


def architecture_for(model_type: str) -> Architecture:
    """The registered layout of ``model_type``; SpaceError when it has none."""
    for arch in ARCHITECTURES:
        if model_type in arch.model_types:
            return arch
    known = ", ".join(sorted(t for arch in ARCHITECTURES for t in arch.model_types))
    raise SpaceError(
        f"model type '{model_type}' is not in the architecture registry (known: {known}); "
        "declare its layers and roles under 'architecture:' in the space file"
    )
