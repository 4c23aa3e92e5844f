"""Prefix tuning: learned key/value vectors prepended in chosen attention layers.

Written by hand because peft's prefix tuning goes through ``past_key_values``, which BERT-style
encoders reject on transformers 5.x ("Model does not support past key values"), which forces one
prefix length on every layer, and which cannot share a model with LoRA. Here the prefix enters
through transformers' attention-function registry: the model's attention implementation is
switched to ``autopeft_prefix``, which prepends the layer's prefix to the (already projected and,
for RoPE models, rotated) keys and values, opens the padding mask to them, and runs SDPA. Layers
without a prefix run plain SDPA. Every family whose attention goes through
``ALL_ATTENTION_FUNCTIONS`` works the same way (BERT, DistilBERT, GPT-2, LLaMA, T5).

A prefix of length L in a layer whose keys are ``kv_width`` wide holds ``2 * L * kv_width``
parameters (direct parametrisation, no reparametrisation MLP), initialised N(0, 0.02).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

IMPLEMENTATION = "autopeft_prefix"

# attention module -> its prefix; weak so that a dropped model frees its entries.
_PREFIXES: weakref.WeakKeyDictionary[nn.Module, Prefix] = weakref.WeakKeyDictionary()


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


def _prefix_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA with the module's prefix prepended to keys/values; shapes (B, heads, T, head_dim)."""
    prefix = _PREFIXES.get(module)
    if prefix is not None:
        prefix_keys, prefix_values = prefix.expand(key)
        key = torch.cat([prefix_keys, key], dim=2)
        value = torch.cat([prefix_values, value], dim=2)
        if attention_mask is not None:
            attend = True if attention_mask.dtype == torch.bool else 0.0
            attention_mask = F.pad(attention_mask, (prefix_keys.shape[2], 0), value=attend)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _materialised_sdpa_mask(**kwargs):
    """SDPA's mask, never skipped for causal models: SDPA's ``is_causal`` shortcut would align
    queries with the start of the longer prefixed key sequence."""
    return sdpa_mask(**{**kwargs, "allow_is_causal_skip": False})


def _register_once() -> None:
    if IMPLEMENTATION not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, _prefix_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, _materialised_sdpa_mask)


class PrefixInjection:
    """Prefixes attached to a model's attention modules; :meth:`remove` detaches them."""

    def __init__(self, model: nn.Module, attention_modules: dict[str, nn.Module], lengths: dict[str, int],
                 kv_widths: dict[str, int]) -> None:
        _register_once()
        self._model = model
        self._original = model.config._attn_implementation
        self.prefixes = {
            name: Prefix(lengths[name], kv_widths[name]).to(next(model.parameters()).device)
            for name in lengths
        }
        self._modules = [attention_modules[name] for name in lengths]
        for name, module in zip(lengths, self._modules):
            _PREFIXES[module] = self.prefixes[name]
        model.config._attn_implementation = IMPLEMENTATION

    def parameters(self) -> list[nn.Parameter]:
        return [p for prefix in self.prefixes.values() for p in prefix.parameters()]

    def remove(self) -> None:
        for module in self._modules:
            _PREFIXES.pop(module, None)
        self._model.config._attn_implementation = self._original
