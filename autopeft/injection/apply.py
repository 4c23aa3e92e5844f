"""Apply a :class:`Structure` to a live model, mixing module types peft cannot combine.

peft injects LoRA-family, IA3 and other tuners in place (one call each, on disjoint matrices);
native bottleneck adapters and prefixes attach through hooks and the attention registry, and
trained biases (the ``bias`` method) are the model's own tensors, saved first. Removal undoes
all of it in reverse order, leaving the base model's modules and tensors exactly as they were, so
a worker can run trial after trial on one loaded model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from autopeft.injection.bottleneck import Bottleneck, attach_parallel, attach_serial
from autopeft.injection.peft_modules import (
    ADAPTER_NAME, ia3_config, inject, lora_config, remove_peft_layers, tuner_config,
)
from autopeft.injection.prefix import PrefixInjection
from autopeft.injection.sparse_delta import attach_delta, chosen_entries, detach_delta
from autopeft.space.layout import ModelLayout
from autopeft.space.sparse_masks import EntriesMask
from autopeft.space.structure import LoraModules, Place, SparseDeltas, Structure
from autopeft.space.tuners import SPARSE_DELTAS, TUNER_METHODS, rate_factor

MeasuredLoraInit = Mapping[Place, Mapping[str, torch.Tensor]]
"""Place -> part -> tensor: what a data-driven LoRA init starts from (see :func:`apply_structure`)."""


def head_parameters(model: nn.Module, layout: ModelLayout) -> list[nn.Parameter]:
    """Parameters of the task head (trained in full, as peft's modules_to_save)."""
    return [p for name in layout.head_modules for p in model.get_submodule(name).parameters()]


@torch.no_grad()
def reset_head(model: nn.Module, layout: ModelLayout, seed: int) -> None:
    """Re-initialise the task head the way transformers does: N(0, initializer_range), zero bias."""
    generator = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    for name in layout.head_modules:
        for module in model.get_submodule(name).modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                if module.bias is not None:
                    module.bias.zero_()


class AppliedStructure:
    """The modules of one structure inside ``model``.

    Attributes:
        parameters: every trainable tensor — the structure's modules and the task head.
        native: the hand-written modules (bottleneck adapters, prefixes) by name, for saving.
        rate_factors: id of a trainable parameter -> its module kind's learning-rate factor
            (absent: 1, e.g. the head); see :meth:`optimizer_groups`.
    """

    def __init__(
        self, model: nn.Module, structure: Structure, layout: ModelLayout,
        measured_init: MeasuredLoraInit | None = None, total_steps: int | None = None,
        sparse_entries: Mapping[Place, torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self._scheduled: nn.Module | None = None
        self._hooks = []
        self._prefix: PrefixInjection | None = None
        self._parametrized: list[nn.Module] = []
        self.native = nn.ModuleDict()
        # The head (and, for the bias method, chosen biases) train in place, and PiSSA, OLoRA and
        # KaSA rewrite base weights: keep copies to restore.
        self._own: list[nn.Parameter] = []
        self._own_before: list[torch.Tensor] = []
        self.rate_factors: dict[int, float] = {}
        try:
            self.parameters = self._attach(structure, layout, measured_init, total_steps, sparse_entries)
        except BaseException:
            self.remove()
            raise
        model.requires_grad_(False)
        for parameter in self.parameters:
            parameter.requires_grad_(True)

    def _attach(
        self, structure: Structure, layout: ModelLayout, measured_init: MeasuredLoraInit | None,
        total_steps: int | None, sparse_entries: Mapping[Place, torch.Tensor] | None,
    ) -> list[nn.Parameter]:
        model = self.model
        new = []
        lora = structure.lora
        if lora is not None:
            if lora.changes_base_weights:
                self._keep(model.get_submodule(layout.matrix(*place).name).weight for place in lora.ranks)
            if lora.starts_from_measurement:
                _require_measured(lora, measured_init)
            if lora.init == "corda":
                _attach_corda_eigens(model, layout, measured_init)
            new += inject(model, lora_config(lora, layout))[0]
            if lora.init == "eva":
                _load_initial_a(model, layout, measured_init)
        if structure.ia3:
            new += self._at_rate("ia3", inject(model, ia3_config(structure.ia3, layout))[0])
        if structure.tuner is not None and structure.tuner.method == "bias":
            places = sorted(structure.tuner.places)
            new += self._at_rate("bias", self._keep(model.get_submodule(layout.matrix(*p).name).bias for p in places))
        elif structure.tuner is not None:
            mask_fn = entries_mask(model, layout, structure.tuner.places, sparse_entries)
            config = tuner_config(structure.tuner, layout, total_steps=total_steps, mask_fn=mask_fn)
            parameters, tuner = inject(model, config)
            new += self._at_rate(structure.tuner.method, parameters)
            self._scheduled = tuner if TUNER_METHODS[structure.tuner.method].scheduled else None
        if structure.sparse is not None:
            new += self._at_rate(SPARSE_DELTAS, self._attach_deltas(structure.sparse, layout, sparse_entries))
        new += self._attach_adapters(structure, layout)
        if structure.prefix:
            self._prefix = PrefixInjection(
                {str(i): model.get_submodule(layout.layers[i].attention) for i in structure.prefix},
                {str(i): n for i, n in structure.prefix.items()},
                {str(i): layout.layers[i].kv_width for i in structure.prefix},
                device=next(model.parameters()).device,
            )
            self.native["prefix"] = nn.ModuleDict(self._prefix.prefixes)
            new += self._prefix.parameters()
        return new + self._keep(head_parameters(model, layout))

    def training_loss(self, **batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to minimise, the task's loss alone) on ``batch`` (with ``labels``).

        They differ for AdaLoRA, which adds the orthogonality penalty of its A and B.
        """
        task = self.model(**batch).loss
        if self._scheduled is None:
            return task, task.detach()
        weight = self._scheduled.peft_config[ADAPTER_NAME].orth_reg_weight
        return task + weight * _orthogonality_penalty(self.model), task.detach()

    def after_optimizer_step(self, step: int) -> None:
        """Call after every optimizer step, before gradients are cleared: AdaLoRA scores its
        singular values from the gradients and prunes ranks on its schedule (0-based ``step``)."""
        if self._scheduled is not None:
            self._scheduled.update_and_allocate(step)

    def _at_rate(self, kind: str, parameters: list[nn.Parameter]) -> list[nn.Parameter]:
        """``parameters``, recorded to train at ``kind``'s learning-rate factor."""
        self.rate_factors.update((id(p), rate_factor(kind)) for p in parameters)
        return parameters

    def optimizer_groups(self, parameters: Sequence[nn.Parameter] | None = None) -> list[dict]:
        """Optimizer parameter groups of ``parameters`` (default: every trainable one), one per
        learning-rate factor: ``{"params": [...], "rate_factor": f}``; a group trains at the run's
        rate times ``f`` (:func:`autopeft.space.tuners.rate_factor`)."""
        return rate_groups(self.parameters if parameters is None else parameters, self.rate_factors)

    def _keep(self, parameters) -> list[nn.Parameter]:
        """The model's own ``parameters`` (to train, or that peft rewrites), restored by :meth:`remove`."""
        parameters = list(parameters)
        self._own += parameters
        self._own_before += [p.detach().clone() for p in parameters]
        return parameters

    def _attach_deltas(self, sparse: SparseDeltas, layout: ModelLayout,
                       sparse_entries: Mapping[Place, torch.Tensor] | None) -> list[nn.Parameter]:
        """Sparse deltas on the base modules (under any peft layer already there, as in DSEE);
        their values live inside the model, so saving and grouping by layer find them by name."""
        values = []
        for place, count in sparse.entries.items():
            module = self.model.get_submodule(layout.matrix(*place).name)
            module = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
            ranked = None if sparse_entries is None else sparse_entries.get(place)
            indices = chosen_entries(module, count, sparse.rule, ranked)
            values.append(attach_delta(module, indices).values)
            self._parametrized.append(module)
        return values

    def _attach_adapters(self, structure: Structure, layout: ModelLayout) -> list[nn.Parameter]:
        device = next(self.model.parameters()).device
        serial, parallel = nn.ModuleDict(), nn.ModuleDict()
        for layer, size in structure.serial_adapter.items():
            adapter = serial[str(layer)] = Bottleneck(layout.hidden_size, size).to(device)
            self._hooks += attach_serial(self.model.get_submodule(layout.layers[layer].ffn_output), adapter)
        for layer, size in structure.parallel_adapter.items():
            adapter = parallel[str(layer)] = Bottleneck(layout.hidden_size, size).to(device)
            self._hooks += attach_parallel(
                self.model.get_submodule(layout.layers[layer].ffn_input),
                self.model.get_submodule(layout.layers[layer].ffn_output),
                adapter,
                structure.parallel_scale,
            )
        if serial:
            self.native["serial_adapter"] = serial
        if parallel:
            self.native["parallel_adapter"] = parallel
        return list(serial.parameters()) + list(parallel.parameters())

    def parameters_by_layer(self, layout: ModelLayout) -> dict[int | None, list[nn.Parameter]]:
        """The trainable parameters grouped by layer index; None holds the task head's."""
        head = {id(p) for p in head_parameters(self.model, layout)}
        trainable = {id(p): p for p in self.parameters}
        groups: dict[int | None, list[nn.Parameter]] = {}
        named = [(name, p) for name, p in self.model.named_parameters() if id(p) in trainable]
        named += [(name, p) for name, p in self.native.named_parameters()]  # "serial_adapter.3.down.weight"
        paths = [(layer.index, layer.path + ".") for layer in layout.layers]
        for name, parameter in named:
            if id(parameter) in head:
                layer = None
            elif name.split(".")[0] in self.native:
                layer = int(name.split(".")[1])
            else:
                layer = next(index for index, path in paths if name.startswith(path))
            groups.setdefault(layer, []).append(parameter)
        return groups

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters)

    def remove(self) -> None:
        """Detach every module; the base model is left bit-for-bit as before :func:`apply_structure`."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        if self._prefix is not None:
            self._prefix.remove()
        for module in self._parametrized:
            detach_delta(module)
        self._parametrized.clear()
        remove_peft_layers(self.model)
        self._scheduled = None
        with torch.no_grad():
            for parameter, saved in zip(self._own, self._own_before):
                parameter.copy_(saved)
        self.model.requires_grad_(False)


def _orthogonality_penalty(model: nn.Module) -> torch.Tensor:
    """AdaLoRA's regulariser: the mean over its A and B matrices of ||P P^T - I|| (Frobenius;
    P^T P for B). peft adds it inside ``AdaLoraModel.forward``, which returns only the sum with the
    task loss and calls the model's forward directly (no hook sees the loss before); the proxy's
    stall check needs the task loss alone, so the same sum is formed here."""
    from peft.tuners.adalora.layer import AdaLoraLayer

    norms = []
    for module in model.modules():
        if isinstance(module, AdaLoraLayer):
            a, b = module.lora_A[ADAPTER_NAME], module.lora_B[ADAPTER_NAME]
            for gram in (a @ a.T, b.T @ b):
                norms.append(torch.linalg.matrix_norm(gram - torch.eye(len(gram), device=gram.device)))
    return torch.stack(norms).mean()


def _require_measured(lora: LoraModules, measured_init: MeasuredLoraInit | None) -> None:
    missing = [place for place in lora.ranks if measured_init is None or place not in measured_init]
    if missing:
        raise ValueError(f"LoRA init '{lora.init}' needs its measurement for {missing[0]}, and none was given")


def _load_initial_a(model: nn.Module, layout: ModelLayout, measured_init: MeasuredLoraInit) -> None:
    """Copy EVA's measured A into every LoRA module.

    peft's own loader (``initialize_lora_eva_weights``) works on a ``PeftModel`` only; injection
    here is in place, so the copy is done directly, as that loader does it.
    """
    with torch.no_grad():
        for place, parts in measured_init.items():
            module = model.get_submodule(layout.matrix(*place).name)
            module.lora_A[ADAPTER_NAME].weight.copy_(parts["A"])


def _attach_corda_eigens(model: nn.Module, layout: ModelLayout, measured_init: MeasuredLoraInit) -> None:
    """Hand CorDA's triplets to peft, which reads them from each base layer (``eigens``) when it
    builds the LoRA module, computes A, B and the residual weight, and deletes them."""
    from peft.tuners.lora.corda import CordaEigens

    for place, parts in measured_init.items():
        module = model.get_submodule(layout.matrix(*place).name)
        device = module.weight.device
        module.eigens = CordaEigens(S_WC=parts["S"].to(device), U_WC=parts["U"].T.to(device),
                                    V_WC=parts["V"].T.to(device))


def rate_groups(parameters: Iterable[nn.Parameter], factors: Mapping[int, float]) -> list[dict]:
    """``parameters`` grouped by learning-rate factor (``factors``: id -> factor; 1 when absent):
    ``[{"params": [...], "rate_factor": f}, ...]``."""
    groups: dict[float, list[nn.Parameter]] = {}
    for parameter in parameters:
        groups.setdefault(factors.get(id(parameter), 1.0), []).append(parameter)
    return [{"params": params, "rate_factor": factor} for factor, params in groups.items()]


def entries_mask(
    model: nn.Module, layout: ModelLayout, places, sparse_entries: Mapping[Place, torch.Tensor] | None
) -> EntriesMask | None:
    """The mask function of a sparse update over measured entries, or None when none were given."""
    if sparse_entries is None:
        return None
    return EntriesMask({model.get_submodule(layout.matrix(*place).name): sparse_entries[place]
                        for place in places if place in sparse_entries})


def apply_structure(
    model: nn.Module, structure: Structure, layout: ModelLayout,
    measured_init: MeasuredLoraInit | None = None, total_steps: int | None = None,
    sparse_entries: Mapping[Place, torch.Tensor] | None = None,
) -> AppliedStructure:
    """Insert ``structure``'s modules into ``model`` (freezing everything else but the head).

    ``measured_init`` is what a data-driven LoRA init starts from, place -> part -> tensor with
    the module's rank r on axis 0: EVA's ``A`` (r, in_features); CorDA's ``S`` (r,), ``U``
    (r, out_features) and ``V`` (r, in_features) (:class:`autopeft.allocation.lora_init.MeasuredInit`).
    ``total_steps`` is the training run's length, which AdaLoRA's rank schedule needs.
    ``sparse_entries`` ranks the entries a sparse update with a measured rule (``sparse_sensitivity``,
    ``sparse_lottery``, sparse deltas by ``sensitivity`` or ``lottery``) trains: place -> 1-D flat
    indices into the weight, best first.
    """
    return AppliedStructure(model, structure, layout, measured_init, total_steps, sparse_entries)
