"""Random structures over every module type, for property tests."""

from __future__ import annotations

import random

import torch

from autopeft.space.layout import ModelLayout
from autopeft.space.structure import (
    LORA_VARIANTS, NOT_ON_CONV1D, SPARSE_RULES, LoraModules, Place, SparseDeltas, Structure, TunerModules,
)
from autopeft.space.tuners import TUNER_METHODS, matrix_params, measured_mask, ranking_rule

SPARSE_METHODS = sorted(name for name, spec in TUNER_METHODS.items() if spec.config_class == "ShiraConfig")
"""Every rule of sparse updates (SHiRA layers): random, magnitude, principal, sensitivity, lottery."""


def random_structure(layout: ModelLayout, rng: random.Random) -> Structure:
    """A non-empty structure mixing module types at random places and sizes, sparse updates included
    (SHiRA on matrices neither LoRA nor IA3 holds, as peft's SHiRA acts on nn.Linear only, not on
    Conv1D; sparse deltas anywhere but the SHiRA matrices, under LoRA and IA3 too)."""
    conv1d = any(shape.conv1d for layer in layout.layers for shape in layer.matrices.values())
    variants = [v for v in LORA_VARIANTS if not (conv1d and v in NOT_ON_CONV1D)]  # peft refuses KaSA on Conv1D
    while True:
        places = [(layer.index, role) for layer in layout.layers for role in layer.matrices]
        rng.shuffle(places)
        lora_places = places[: rng.randint(0, len(places) // 2)]
        ia3_places = places[len(lora_places) : len(lora_places) + rng.randint(0, len(places) // 3)]
        sparse_places = [] if conv1d else places[len(lora_places) + len(ia3_places) :][: rng.randint(0, 4)]
        layers = range(layout.num_layers)
        tuner = _sparse(layout, sparse_places, rng)
        structure = Structure(
            lora=LoraModules(
                ranks={place: rng.choice([1, 2, 3, 8]) for place in lora_places},
                variant=rng.choice(variants),
            ),
            ia3=frozenset(ia3_places),
            serial_adapter={i: rng.choice([0, 1, 4, 16]) for i in layers if rng.random() < 0.4},
            parallel_adapter={i: rng.choice([0, 2, 8]) for i in layers if rng.random() < 0.4},
            parallel_scale=rng.choice([1.0, 4.0]),
            prefix={i: rng.choice([0, 1, 5]) for i in layers if rng.random() < 0.4},
            tuner=tuner,
            sparse=_deltas(places, tuner, rng),
        )
        if not structure.is_empty:
            return structure


def _sparse(layout: ModelLayout, places: list, rng: random.Random) -> TunerModules | None:
    """A sparse update of a random rule and r on ``places``, or None when r is too large for one."""
    method, size = rng.choice(SPARSE_METHODS), rng.choice([1, 2, 4])
    if any(matrix_params(method, size, layout.matrix(*place)) is None for place in places):
        return None
    return TunerModules(method, size, frozenset(places))


def _deltas(places: list[Place], tuner: TunerModules | None, rng: random.Random) -> SparseDeltas | None:
    """Sparse deltas of 1-50 entries on up to 3 matrices the tuner does not hold, by the tuner's
    measured rule when it has one (a structure trains by one ranking), else by a random rule."""
    free = [place for place in places if tuner is None or place not in tuner.places]
    chosen = rng.sample(free, min(len(free), rng.randint(0, 3)))
    rule = (measured_mask(tuner.method) if tuner is not None else None) or rng.choice(SPARSE_RULES)
    return SparseDeltas({place: rng.randint(1, 50) for place in chosen}, rule) if chosen else None


def random_entries(structure: Structure, layout: ModelLayout, seed: int) -> dict[Place, torch.Tensor] | None:
    """A random ranking of every matrix's entries for sparse updates with a measured rule (whose
    real ranking needs task data), else None."""
    if ranking_rule(structure) is None:
        return None
    places = set(structure.tuner.places if structure.tuner is not None else ())
    places |= set(structure.sparse.entries if structure.sparse is not None else ())
    generator = torch.Generator().manual_seed(seed)
    return {place: torch.randperm(layout.matrix(*place).numel, generator=generator) for place in sorted(places)}


def union_structure(layout: ModelLayout) -> Structure:
    """Every module type at once, on disjoint matrices (LoRA on v/qkv, IA3 on the rest)."""
    first = layout.layers[0].matrices
    lora_role = "v" if "v" in first else "qkv"
    return Structure(
        lora=LoraModules({(layer.index, lora_role): 4 for layer in layout.layers}, variant="dora"),
        ia3=frozenset((layer.index, role) for layer in layout.layers for role in layer.matrices if role != lora_role),
        serial_adapter={layer.index: 8 for layer in layout.layers},
        parallel_adapter={layer.index: 4 for layer in layout.layers},
        prefix={layer.index: 3 for layer in layout.layers},
    )
