"""Serial and parallel bottleneck adapters, attached with forward hooks.

Written by hand because no maintained library does it on our stack: AdapterHub ``adapters`` 1.3
pins transformers 4.57 and peft has no bottleneck adapters. Hooks leave the base model's modules
untouched, so removing them restores it bit for bit.

- Serial (Pfeiffer placement): ``y = f(x); y <- y + A(y)`` on the FFN output before the residual.
- Parallel (He et al. 2022): ``y <- y + s * A(x)`` where ``x`` is the FFN input and ``s`` a scale.

``A`` is ``up(act(down(.)))`` with ``down: hidden -> size`` and ``up: size -> hidden``, both with
bias; ``up`` starts at zero so that every adapter starts as the identity.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class Bottleneck(nn.Module):
    """Maps ``(..., hidden) -> (..., hidden)`` through ``size`` units; 2*hidden*size + size + hidden params."""

    def __init__(self, hidden: int, size: int) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.up = nn.Linear(size, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


def _first_tensor(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, tensor: torch.Tensor):
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


def attach_serial(ffn_output: nn.Module, adapter: Bottleneck) -> list[RemovableHandle]:
    """Apply ``adapter`` serially to the output of ``ffn_output``."""

    def add_adapter(module, args, output):
        y = _first_tensor(output)
        return _replace_first(output, y + adapter(y))

    return [ffn_output.register_forward_hook(add_adapter)]


def attach_parallel(
    ffn_input: nn.Module, ffn_output: nn.Module, adapter: Bottleneck, scale: float
) -> list[RemovableHandle]:
    """Add ``scale * adapter(FFN input)`` to the FFN output.

    The input is caught by a pre-hook on ``ffn_input`` and consumed by a hook on ``ffn_output``;
    both may be the same module (LLaMA's ``mlp``) or two (BERT's ``intermediate`` and
    ``output.dense``).
    """
    seen: list[torch.Tensor] = []

    def remember_input(module, args):
        seen.append(args[0])

    def add_adapter(module, args, output):
        x = seen.pop()
        return _replace_first(output, _first_tensor(output) + scale * adapter(x))

    return [
        ffn_input.register_forward_pre_hook(remember_input),
        ffn_output.register_forward_hook(add_adapter),
    ]
