"""SPT / IST scores for budgeted spaces, the measurements of data-driven LoRA inits (EVA, CorDA)
and entry rankings for sparse updates with a measured rule: looked up in the store, measured once
when missing.

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
from autopeft.allocation.corda import CORDA_EXAMPLES, measure_corda
from autopeft.allocation.eva import EVA_BATCHES, EVA_BATCH_SIZE, measure_eva
from autopeft.allocation.lora_init import MeasuredInit
from autopeft.allocation.ist import measure_ist
from autopeft.allocation.sparse_rankings import (
    LOTTERY_BATCH_SIZE, LOTTERY_LEARNING_RATE, LOTTERY_STEPS, SparseRanking, measure_lottery_ranking,
    measure_sensitivity_ranking, measure_spt_with_ranking,
)
from autopeft.allocation.spt import measure_spt
from autopeft.models import load_base_model, load_tokenizer
from autopeft.scheduler.spec import PreparedJob
from autopeft.space.layout import read_layout
from autopeft.space.schema import SensitivitySettings
from autopeft.space.search_space import declared_architecture_of
from autopeft.store import Store
from autopeft.store.sensitivity import (
    cached_sensitivity, cached_tensors, save_sensitivity, save_tensors, sensitivity_key,
)
from autopeft.tasks import Split, tokenize_split


def sensitivity_settings(prepared: PreparedJob) -> SensitivitySettings:
    """How SPT gradients and IST probes are measured: a budgeted space's own settings, else the
    defaults (an IST layer schedule or a sparse update by sensitivity in another space)."""
    budget = prepared.space_spec.budget
    return budget.sensitivity if budget is not None else SensitivitySettings()


def measurement_params(prepared: PreparedJob, method: str) -> dict[str, Any]:
    """Every measurement setting the scores of ``method`` depend on (with :func:`data_params`, the cache key)."""
    settings = sensitivity_settings(prepared)
    params: dict[str, Any] = {**_subset_params(prepared), "batch_size": settings.batch_size}
    if method == "spt":
        params["batches"] = settings.batches
    else:
        params.update(steps=settings.ist_steps, probe_batches=settings.ist_probe_batches)
    return params


def _subset_params(prepared: PreparedJob) -> dict[str, Any]:
    """The settings of the training subset every measurement reads: its size, length and seed."""
    fidelity = prepared.spec.fidelity
    return {"train_examples": fidelity.train_examples, "max_length": fidelity.max_length, "seed": prepared.spec.seed}


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
    them, the measurements of data-driven LoRA inits and the entry rankings of measured sparse
    rules (each from the cache, or measured and cached)."""
    measure = _Measurer(prepared)
    prepared = _provide_scores(prepared, store, measure, on_measure)
    prepared = _provide_inits(prepared, store, measure, on_measure)
    return _provide_rankings(prepared, store, measure, on_measure)


def init_params(prepared: PreparedJob, init: str, rank: int) -> dict[str, Any]:
    """Every setting a data-driven init's measurement depends on, the data's digest included (the cache key)."""
    if init == "eva":
        settings = {"batches": EVA_BATCHES, "batch_size": EVA_BATCH_SIZE}
    else:
        settings = {"examples": CORDA_EXAMPLES, "corda_method": "ipm"}
    return {"rank": rank, **_subset_params(prepared), **settings, **data_params(prepared)}


def ranking_params(prepared: PreparedJob, rule: str, size: int) -> dict[str, Any]:
    """Every setting a measured rule's entry ranking depends on, the data's digest included (the cache key)."""
    params: dict[str, Any] = {"size": size, **_subset_params(prepared)}
    if rule == "sensitivity":
        settings = sensitivity_settings(prepared)
        params.update(batches=settings.batches, batch_size=settings.batch_size)
    else:
        params.update(steps=LOTTERY_STEPS, batch_size=LOTTERY_BATCH_SIZE, learning_rate=LOTTERY_LEARNING_RATE)
    return {**params, **data_params(prepared)}


def _cached_or_measured(
    store: Store, key: dict[str, Any], decode: Callable[[bytes, float], Any], measure: Callable[[], Any],
    on_measure: Callable[[str], None] | None,
) -> tuple[Any, str]:
    """(tensors read from the cache under ``key``, or measured and cached; their stored key)."""
    stored_as = sensitivity_key(**key)
    cached = cached_tensors(store, stored_as)
    if cached is not None:
        return decode(*cached), stored_as
    if on_measure is not None:
        on_measure(key["method"])
    measured = measure()
    save_tensors(store, measured.to_bytes(), measured.seconds, **key)
    return measured, stored_as


def _provide_inits(
    prepared: PreparedJob, store: Store, measure: _Measurer, on_measure: Callable[[str], None] | None
) -> PreparedJob:
    inits, keys = {}, {}
    for init, rank in prepared.space.measured_inits.items():
        key = dict(model=prepared.spec.model, task=prepared.task.source, method=init,
                   params=init_params(prepared, init, rank))
        inits[init], keys[init] = _cached_or_measured(
            store, key, functools.partial(MeasuredInit.from_bytes, init), lambda: measure.init(init, rank),
            on_measure,
        )
    if not inits:
        return prepared
    return dataclasses.replace(prepared, inits=inits, init_keys=keys)


def _provide_rankings(
    prepared: PreparedJob, store: Store, measure: _Measurer, on_measure: Callable[[str], None] | None
) -> PreparedJob:
    rankings, keys = {}, {}
    for rule, size in prepared.space.measured_masks.items():
        key = dict(model=prepared.spec.model, task=prepared.task.source, method=f"sparse_{rule}",
                   params=ranking_params(prepared, rule, size))
        rankings[rule], keys[rule] = _cached_or_measured(
            store, key, functools.partial(SparseRanking.from_bytes, rule), lambda: measure.ranking(rule, size),
            on_measure,
        )
    if not rankings:
        return prepared
    return dataclasses.replace(prepared, rankings=rankings, ranking_keys=keys)


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

    def init(self, init: str, rank: int) -> MeasuredInit:
        model, layout, data = self._loaded
        measure = measure_eva if init == "eva" else measure_corda
        return measure(model, layout, data, rank=rank, seed=self.prepared.spec.seed)

    @functools.cached_property
    def _spt_with_ranking(self) -> tuple[Sensitivity, SparseRanking]:
        """SPT scores and the sensitivity ranking from one gradient pass, for a space that needs both."""
        settings = sensitivity_settings(self.prepared)
        model, layout, data = self._loaded
        return measure_spt_with_ranking(model, layout, data, size=self.prepared.space.measured_masks["sensitivity"],
                                        batches=settings.batches, batch_size=settings.batch_size,
                                        seed=self.prepared.spec.seed)

    def _needs_spt_and_ranking(self) -> bool:
        space = self.prepared.space
        return "spt" in space.needed_sensitivities and "sensitivity" in space.measured_masks

    def ranking(self, rule: str, size: int) -> SparseRanking:
        model, layout, data = self._loaded
        seed = self.prepared.spec.seed
        if rule == "sensitivity" and self._needs_spt_and_ranking():
            return self._spt_with_ranking[1]
        if rule == "sensitivity":
            settings = sensitivity_settings(self.prepared)
            return measure_sensitivity_ranking(model, layout, data, size=size, batches=settings.batches,
                                               batch_size=settings.batch_size, seed=seed)
        return measure_lottery_ranking(model, layout, data, size=size, seed=seed)

    def __call__(self, method: str) -> Sensitivity:
        settings = sensitivity_settings(self.prepared)
        seed = self.prepared.spec.seed
        model, layout, data = self._loaded
        if method == "spt" and self._needs_spt_and_ranking():
            return self._spt_with_ranking[0]
        if method == "spt":
            return measure_spt(model, layout, data, batches=settings.batches,
                               batch_size=settings.batch_size, seed=seed)
        return measure_ist(model, layout, data, steps=settings.ist_steps,
                           probe_batches=settings.ist_probe_batches, batch_size=settings.batch_size, seed=seed)
