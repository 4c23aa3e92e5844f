"""SPT / IST scores for budgeted spaces and EVA's vectors for the ``eva`` LoRA init: looked up in
the store, measured once when missing.

Measuring runs in the driver before any worker starts (it needs the real model and the job's
training subset, and would otherwise compete with the workers for the CPU). Scores are keyed by
model, task, method, every setting they depend on and the data itself (a digest of the train
split as loaded, and the column options that selected it), so every job on the same model, data
and settings reuses them, and an edited file or other columns never do.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from autopeft.space.sensitivity import Sensitivity
from autopeft.allocation.eva import EVA_BATCHES, EVA_BATCH_SIZE, EvaComponents, measure_eva
from autopeft.allocation.ist import measure_ist
from autopeft.allocation.spt import measure_spt
from autopeft.models import load_base_model, load_tokenizer
from autopeft.scheduler.spec import PreparedJob
from autopeft.space.layout import read_layout
from autopeft.space.search_space import declared_architecture_of
from autopeft.store import Store
from autopeft.store.sensitivity import (
    cached_sensitivity, cached_tensors, save_sensitivity, save_tensors, sensitivity_key,
)
from autopeft.tasks import Split, tokenize_split


def measurement_params(prepared: PreparedJob, method: str) -> dict[str, Any]:
    """Every measurement setting the scores of ``method`` depend on (with :func:`data_params`, the cache key)."""
    settings = prepared.space_spec.budget.sensitivity
    fidelity, seed = prepared.spec.fidelity, prepared.spec.seed
    params: dict[str, Any] = {
        "train_examples": fidelity.train_examples,
        "max_length": fidelity.max_length,
        "seed": seed,
        "batch_size": settings.batch_size,
    }
    if method == "spt":
        params["batches"] = settings.batches
    else:
        params.update(steps=settings.ist_steps, probe_batches=settings.ist_probe_batches)
    return params


def data_params(prepared: PreparedJob) -> dict[str, Any]:
    """What the scores depend on in the data (the cache key): a task path alone would keep serving
    the scores of a file after it was edited, or of other columns of the same file."""
    options = prepared.spec.task_options
    return {
        "train_digest": split_digest(prepared.task.train),
        "text_columns": list(options.text_columns) if options.text_columns else None,
        "label_column": options.label_column,
    }


def split_digest(split: Split) -> str:
    """SHA-256 (hex) of a split's texts and labels, example by example."""
    digest = hashlib.sha256()
    labels = split.labels if split.labels is not None else [None] * len(split)
    for texts, label in zip(split.texts, labels):
        digest.update(json.dumps([texts, label]).encode())
    return digest.hexdigest()


def provide_sensitivities(
    prepared: PreparedJob, store: Store, on_measure: Callable[[str], None] | None = None
) -> PreparedJob:
    """``prepared`` with its space decoding under the scores it needs and, when its space offers
    the ``eva`` init, EVA's vectors (each from the cache, or measured and cached)."""
    measure = _Measurer(prepared)
    return _provide_eva(_provide_scores(prepared, store, measure, on_measure), store, measure, on_measure)


def eva_params(prepared: PreparedJob, rank: int) -> dict[str, Any]:
    """Every setting EVA's vectors depend on, the data's digest included (the cache key)."""
    fidelity = prepared.spec.fidelity
    return {"rank": rank, "train_examples": fidelity.train_examples, "max_length": fidelity.max_length,
            "seed": prepared.spec.seed, "batches": EVA_BATCHES, "batch_size": EVA_BATCH_SIZE,
            **data_params(prepared)}


def _provide_eva(
    prepared: PreparedJob, store: Store, measure: _Measurer, on_measure: Callable[[str], None] | None
) -> PreparedJob:
    rank = prepared.space.eva_rank
    if rank is None:
        return prepared
    key = dict(model=prepared.spec.model, task=prepared.task.source, method="eva", params=eva_params(prepared, rank))
    stored_as = sensitivity_key(**key)
    cached = cached_tensors(store, stored_as)
    if cached is not None:
        eva = EvaComponents.from_bytes(*cached)
    else:
        if on_measure is not None:
            on_measure("eva")
        eva = measure.eva(rank)
        save_tensors(store, eva.to_bytes(), eva.seconds, **key)
    return dataclasses.replace(prepared, eva=eva, eva_key=stored_as)


def _provide_scores(
    prepared: PreparedJob, store: Store, measure: _Measurer, on_measure: Callable[[str], None] | None
) -> PreparedJob:
    needed = prepared.space.needed_sensitivities
    if not needed:
        return prepared
    data = data_params(prepared)
    found: dict[str, Sensitivity] = {}
    missing = []
    for method in needed:
        key = dict(model=prepared.spec.model, task=prepared.task.source, method=method,
                   params={**measurement_params(prepared, method), **data})
        cached = cached_sensitivity(store, **key)
        if cached is None:
            missing.append((method, key))
        else:
            found[method] = cached
    if missing:
        for method, key in missing:
            if on_measure is not None:
                on_measure(method)
            found[method] = measure(method)
            save_sensitivity(store, found[method], model=key["model"], task=key["task"], params=key["params"])
    return dataclasses.replace(prepared, space=prepared.space.with_sensitivities(found))


class _Measurer:
    """Loads the model and the job's training subset once, on the first missing measurement."""

    def __init__(self, prepared: PreparedJob) -> None:
        self.prepared = prepared

    @functools.cached_property
    def _loaded(self) -> tuple[Any, Any, Any]:
        """(model, layout, tokenized training subset)."""
        prepared = self.prepared
        task, fidelity = prepared.task, prepared.spec.fidelity
        model = load_base_model(prepared.model, task)
        model.requires_grad_(False)
        layout = read_layout(model, declared_architecture_of(prepared.space_spec))
        train = task.train.subset(fidelity.train_examples, prepared.spec.seed)
        return model, layout, tokenize_split(train, task.kind, load_tokenizer(prepared.model), fidelity.max_length)

    def eva(self, rank: int) -> EvaComponents:
        model, layout, data = self._loaded
        return measure_eva(model, layout, data, rank=rank, seed=self.prepared.spec.seed)

    def __call__(self, method: str) -> Sensitivity:
        settings = self.prepared.space_spec.budget.sensitivity
        seed = self.prepared.spec.seed
        model, layout, data = self._loaded
        if method == "spt":
            return measure_spt(model, layout, data, batches=settings.batches,
                               batch_size=settings.batch_size, seed=seed)
        return measure_ist(model, layout, data, steps=settings.ist_steps,
                           probe_batches=settings.ist_probe_batches, batch_size=settings.batch_size, seed=seed)
