"""Exact trainable-parameter counts.

The count is computed from a :class:`Structure` and a :class:`ModelLayout` alone — no model is
built; other peft tuners are counted per matrix shape once (:func:`autopeft.space.tuners.matrix_params`)
— and equals what the built model reports (tests check this over hundreds of random
structures per architecture). It is therefore an exact objective and a hard constraint for the
optimizers, never something a surrogate model has to learn.
"""

from __future__ import annotations

from autopeft.errors import SpaceError
from autopeft.space.layout import MatrixShape, ModelLayout
from autopeft.space.structure import LoraModules, Structure, TunerModules
from autopeft.space.tuners import matrix_params


def lora_params(shape: MatrixShape, rank: int, variant: str) -> int:
    """A (rank x in) + B (out x rank); DoRA adds one magnitude per output feature, KaSA one
    singular value per rank."""
    extra = {"dora": shape.out_features, "kasa": rank}.get(variant, 0)
    return rank * (shape.in_features + shape.out_features) + extra


def ia3_params(shape: MatrixShape, role: str, layout: ModelLayout) -> int:
    """One scale per input feature on feed-forward roles, per output feature elsewhere (as peft)."""
    return shape.in_features if role in layout.feedforward_roles else shape.out_features


def bottleneck_params(hidden: int, size: int) -> int:
    """Down projection hidden -> size and up projection size -> hidden, both with bias."""
    return 2 * hidden * size + size + hidden


def count_lora(lora: LoraModules, layout: ModelLayout) -> int:
    return sum(
        lora_params(layout.matrix(layer, role), rank, lora.variant)
        for (layer, role), rank in lora.ranks.items()
    )


def count_tuner(tuner: TunerModules, layout: ModelLayout) -> int | None:
    """Trainable parameters of a tuner; None when the method cannot act on one of its places."""
    if tuner.method == "ln_tuning":
        return sum(sum(layout.layers[layer].norms.values()) for layer, _ in tuner.places) or None
    counts = [matrix_params(tuner.method, tuner.size, layout.matrix(layer, role), tuner.settings)
              for layer, role in tuner.places]
    return None if None in counts else sum(counts)


def count_trainable(structure: Structure, layout: ModelLayout) -> int:
    """Trainable parameters of ``structure`` on ``layout``'s model, task head included."""
    hidden = layout.hidden_size
    total = layout.head_params
    if structure.lora is not None:
        total += count_lora(structure.lora, layout)
    total += sum(ia3_params(layout.matrix(layer, role), role, layout) for layer, role in structure.ia3)
    total += sum(bottleneck_params(hidden, size) for size in structure.serial_adapter.values())
    total += sum(bottleneck_params(hidden, size) for size in structure.parallel_adapter.values())
    total += sum(2 * length * layout.layers[layer].kv_width for layer, length in structure.prefix.items())
    if structure.tuner is not None:
        tuner = count_tuner(structure.tuner, layout)
        if tuner is None:
            raise SpaceError(f"{structure.tuner.method} at size {structure.tuner.size} cannot act on these matrices")
        total += tuner
    if structure.sparse is not None:
        total += sum(structure.sparse.entries.values())
    return total
