"""Prefix tuning: learned key/value vectors prepended in chosen attention layers.

Written by hand because peft's prefix tuning goes through ``past_key_values``, which BERT-style
encoders reject on transformers 5.x ("Model does not support past key values"), which forces one
prefix length on every layer, and which cannot share a model with LoRA. Here the prefix enters
through transformers' attention-function registry: the model's attention implementation is
switched to ``autopeft_prefix``, which prepends the layer's prefix to the (already projected and,
for RoPE models, rotated) keys and values, opens the mask (and T5's position bias) to them, and
calls the implementation the model had before (SDPA, or the model's own eager attention). Layers
without a prefix run that implementation unchanged. Every family whose attention goes through
``ALL_ATTENTION_FUNCTIONS`` works the same way (BERT, DistilBERT, GPT-2, LLaMA, T5).

A prefix of length L in a layer whose keys are ``kv_width`` wide holds ``2 * L * kv_width``
parameters (direct parametrisation, no reparametrisation MLP), initialised N(0, 0.02).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

IMPLEMENTATION = "autopeft_prefix"

# attention module -> its prefix; weak so that a dropped model frees its entries.
_PREFIXES: weakref.WeakKeyDictionary[nn.Module, Prefix] = weakref.WeakKeyDictionary()
# id(config) -> the attention implementation it had before prefixes were attached.
_ORIGINAL_IMPLEMENTATION: dict[int, str] = {}


class Prefix(nn.Module):
    """Keys and values of shape ``(length, kv_width)`` for one attention layer."""

    def __init__(self, length: int, kv_width: int) -> None:
        super().__init__()
        self.keys = nn.Parameter(torch.randn(length, kv_width) * 0.02)
        self.values = nn.Parameter(torch.randn(length, kv_width) * 0.02)

    def expand(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix keys and values shaped like ``like`` = (B, heads, T, head_dim) -> (B, heads, L, head_dim)."""
        batch, heads, _, head_dim = like.shape
        length = self.keys.shape[0]

        def shaped(p: torch.Tensor) -> torch.Tensor:
            return p.to(like.dtype).view(length, heads, head_dim).transpose(0, 1).expand(batch, -1, -1, -1)

        return shaped(self.keys), shaped(self.values)


def _original_attention(module: nn.Module, implementation: str) -> Callable:
    """The attention function the model used before prefixes: a registered one, or the model
    file's own ``eager_attention_forward`` (which may take extras such as T5's position bias)."""
    if implementation == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[implementation]


def _prefix_attention(module, query, key, value, attention_mask, **kwargs):
    """The original attention with the module's prefix prepended; shapes (B, heads, T, head_dim)."""
    implementation = _ORIGINAL_IMPLEMENTATION[id(module.config)]
    prefix = _PREFIXES.get(module)
    if prefix is not None:
        prefix_keys, prefix_values = prefix.expand(key)
        length = prefix_keys.shape[2]
        key = torch.cat([prefix_keys, key], dim=2)
        value = torch.cat([prefix_values, value], dim=2)
        attention_mask = _open_columns(attention_mask, length)
        if isinstance(kwargs.get("position_bias"), torch.Tensor):  # T5: no relative bias to prefixes
            kwargs["position_bias"] = F.pad(kwargs["position_bias"], (length, 0), value=0.0)
    return _original_attention(module, implementation)(module, query, key, value, attention_mask, **kwargs)


def _open_columns(mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Prepend ``length`` always-visible key columns to a boolean or additive mask (..., Tq, Tk)."""
    if mask is None:
        return None
    return F.pad(mask, (length, 0), value=True if mask.dtype == torch.bool else 0.0)


def _prefix_mask(**kwargs):
    """The original implementation's mask, always materialised: SDPA's ``is_causal`` shortcut
    would align queries with the start of the longer prefixed key sequence."""
    if _ORIGINAL_IMPLEMENTATION[id(kwargs["config"])] == "eager":
        return eager_mask(**kwargs)
    return sdpa_mask(**{**kwargs, "allow_is_causal_skip": False})


def _register_once() -> None:
    if IMPLEMENTATION not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, _prefix_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, _prefix_mask)


class PrefixInjection:
    """Prefixes attached to attention modules; :meth:`remove` detaches them.

    The implementation switch happens on every config object the prefixed attention modules
    read: encoder-decoder models (T5) give each stack its own copy of the config.
    """

    def __init__(self, attention_modules: dict[str, nn.Module], lengths: dict[str, int],
                 kv_widths: dict[str, int], device: torch.device) -> None:
        _register_once()
        self.prefixes = {name: Prefix(lengths[name], kv_widths[name]).to(device) for name in lengths}
        self._modules = [attention_modules[name] for name in lengths]
        self._configs = list({id(m.config): m.config for m in self._modules}.values())
        for config in self._configs:
            _ORIGINAL_IMPLEMENTATION[id(config)] = config._attn_implementation
            config._attn_implementation = IMPLEMENTATION
        for name, module in zip(lengths, self._modules):
            _PREFIXES[module] = self.prefixes[name]

    def parameters(self) -> list[nn.Parameter]:
        return [p for prefix in self.prefixes.values() for p in prefix.parameters()]

    def remove(self) -> None:
        for module in self._modules:
            _PREFIXES.pop(module, None)
        for config in self._configs:
            config._attn_implementation = _ORIGINAL_IMPLEMENTATION.pop(id(config))
