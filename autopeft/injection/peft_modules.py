"""LoRA-family, IA3 and other peft tuners: config building, in-place injection, removal.

The same :func:`lora_config` feeds the worker's injection and the ``peft`` export, so an exported
``adapter_config.json`` rebuilds exactly the modules a trial trained.

Per-module ranks are written with one *anchored, fully-qualified* key per module. peft matches a
``rank_pattern`` key with ``re.match(rf"(.*\\.)?({key})$", name)``, takes the first matching key in
dict order, and saves the JSON key-sorted; a short key such as ``layer.1.attention.self.query``
would also match ``layer.11...`` and could change ranks on reload. A key ``^<escaped full name>``
matches one module only, whatever the order.
"""

from __future__ import annotations

import re
from collections import Counter

from peft import EvaConfig, IA3Config, KasaConfig, LoraConfig, PeftConfig
from peft.tuners.lora.config import CordaConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from autopeft.space.layout import ModelLayout
from autopeft.space.structure import LoraModules, Place, TunerModules
from autopeft.space.tuners import build_tuner, peft_config

ADAPTER_NAME = "autopeft"
# Exact PiSSA (a full SVD) rather than its randomised fast form: an export must rebuild the same
# A, B and residual on the user's copy of the base model.
PEFT_INIT = {"default": True, "gaussian": "gaussian", "orthogonal": "orthogonal", "pissa": "pissa", "olora": "olora",
             "eva": "eva", "corda": "corda"}
# EVA with rho = 1 keeps every module at the structure's rank (rho > 1 redistributes ranks by
# explained variance, which would change the structure after it was chosen).
EVA_CONFIG = EvaConfig(rho=1.0)


def anchored_key(module_name: str) -> str:
    """A rank/alpha pattern key that matches ``module_name`` and nothing else."""
    return "^" + re.escape(module_name)


def lora_config(lora: LoraModules, layout: ModelLayout, **extra) -> LoraConfig:
    """The peft LoraConfig of ``lora`` on ``layout``'s model; ``extra`` goes to LoraConfig."""
    by_name = {layout.matrix(layer, role).name: rank for (layer, role), rank in lora.ranks.items()}
    common_rank = Counter(by_name.values()).most_common(1)[0][0]
    uniform = len(set(by_name.values())) == 1
    return LoraConfig(
        r=common_rank,
        lora_alpha=lora.alpha(common_rank),
        target_modules=sorted(by_name),
        rank_pattern={} if uniform else {anchored_key(n): r for n, r in sorted(by_name.items())},
        alpha_pattern={} if uniform else {anchored_key(n): lora.alpha(r) for n, r in sorted(by_name.items())},
        lora_dropout=lora.dropout,
        use_dora=lora.variant == "dora",
        use_rslora=lora.variant == "rslora",
        kasa_config=KasaConfig() if lora.variant == "kasa" else None,
        init_lora_weights=PEFT_INIT[lora.init],
        eva_config=EVA_CONFIG if lora.init == "eva" else None,
        corda_config=CordaConfig(corda_method="ipm") if lora.init == "corda" else None,
        fan_in_fan_out=_uses_conv1d(lora.ranks, layout),
        bias="none",
        **extra,
    )


def ia3_config(places: frozenset[Place], layout: ModelLayout, **extra) -> IA3Config:
    """The peft IA3Config scaling the matrices at ``places``."""
    names = sorted(layout.matrix(layer, role).name for layer, role in places)
    feedforward = sorted(
        layout.matrix(layer, role).name for layer, role in places if role in layout.feedforward_roles
    )
    return IA3Config(
        target_modules=names,
        feedforward_modules=feedforward,
        fan_in_fan_out=_uses_conv1d(places, layout),
        **extra,
    )


def tuner_config(tuner: TunerModules, layout: ModelLayout, **extra) -> PeftConfig:
    """The peft config of a non-LoRA tuner (``tuner.method`` other than ``bias``)."""
    if tuner.method == "ln_tuning":
        names = [name for layer, _ in tuner.places for name in layout.layers[layer].norms]
        return peft_config(tuner.method, tuner.size, names, settings=tuner.settings, **extra)
    names = [layout.matrix(layer, role).name for layer, role in tuner.places]
    return peft_config(tuner.method, tuner.size, names, settings=tuner.settings,
                       conv1d=_uses_conv1d(tuner.places, layout), **extra)


def _uses_conv1d(places, layout: ModelLayout) -> bool:
    return any(layout.matrix(layer, role).conv1d for layer, role in places)


def inject(model: nn.Module, config: PeftConfig) -> tuple[list[nn.Parameter], nn.Module]:
    """Inject ``config``'s modules into ``model`` in place; return the new parameters and peft's
    tuner object (which a scheduled tuner, AdaLoRA, needs while training).

    peft marks everything but its own parameters as frozen while injecting; the caller decides
    what trains, from the returned list.
    """
    before = {id(p) for p in model.parameters()}
    tuner = build_tuner(model, config, ADAPTER_NAME)
    return [p for p in model.parameters() if id(p) not in before and p.requires_grad], tuner


def remove_peft_layers(model: nn.Module) -> None:
    """Put every module peft wrapped back in its place, untouched."""
    wrapped = [name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
    for name in sorted(wrapped, key=len, reverse=True):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, getattr(parent, child).get_base_layer())
