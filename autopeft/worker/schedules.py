"""Layer schedules in the proxy's training loop: which layers' parameters train at which step.

LISA samples ``active`` layers uniformly every ``period`` steps; IST samples them in proportion to
the layers' measured importance. Each sampling starts a fresh optimizer over the sampled layers'
parameters and the task head (as LISA does), so optimizer state exists only for what trains; the
learning-rate schedule runs on the global step. Written by hand: neither peft nor transformers
schedules layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from autopeft.space.structure import LayerSchedule


class LayerSampler:
    """Picks the parameters that train in each period of a :class:`LayerSchedule`.

    Args:
        groups: layer index -> its trainable parameters; key None holds those that always train.
        seed: the trial's seed, so that a replicate samples the same layers.
    """

    def __init__(self, schedule: LayerSchedule, groups: Mapping[int | None, Sequence[nn.Parameter]], seed: int) -> None:
        self.schedule = schedule
        self.groups = groups
        self.layers = sorted(layer for layer in groups if layer is not None)
        self.generator = torch.Generator().manual_seed(seed)

    def starts_period(self, step: int) -> bool:
        return step % self.schedule.period == 0

    def sample(self) -> tuple[list[int], list[nn.Parameter]]:
        """(sampled layers, the parameters that train until the next period)."""
        weights = torch.tensor(
            [self.schedule.weights[layer] if self.schedule.weights else 1.0 for layer in self.layers],
            dtype=torch.double,
        ).clamp_min(1e-12)
        count = min(self.schedule.active, len(self.layers))
        picked = torch.multinomial(weights, count, replacement=False, generator=self.generator)
        layers = sorted(self.layers[i] for i in picked.tolist())
        parameters = [p for layer in (None, *layers) for p in self.groups.get(layer, ())]
        return layers, parameters


def train_only(all_parameters: Sequence[nn.Parameter], active: Sequence[nn.Parameter]) -> None:
    """requires_grad on ``active``, off on the rest of ``all_parameters`` (their grads dropped)."""
    chosen = {id(p) for p in active}
    for parameter in all_parameters:
        parameter.requires_grad_(id(parameter) in chosen)
        if id(parameter) not in chosen:
            parameter.grad = None
