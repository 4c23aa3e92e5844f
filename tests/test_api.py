"""``autopeft.apply`` / ``save_adapter`` / ``load_adapter`` on a user's own MiniLM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import autopeft
from autopeft.errors import ExportError
from autopeft.export import export_trial
from autopeft.models import TaskHead, load_base_model, load_tokenizer
from autopeft.space.structure import LoraModules, Structure
from autopeft.tasks import TaskKind
from tests.export.conftest import JobBuilder

pytestmark = pytest.mark.slow

MIXED = Structure(
    lora=LoraModules({(0, "q"): 4, (5, "v"): 8}),
    ia3=frozenset({(2, "down")}),
    serial_adapter={1: 8},
    parallel_adapter={3: 6},
    prefix={4: 3},
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_data):
    """An autopeft export of a mixed structure on MiniLM / MRPC, and its trial."""
    from autopeft.store import Store

    folder = tmp_path_factory.mktemp("api")
    job = JobBuilder(Store(f"sqlite:///{folder / 'store.db'}"), "minilm", str(shared_data / "glue" / "MRPC"))
    trial = job.trial(MIXED)
    export_trial(*job.records(trial), "autopeft", folder / "export")
    return folder / "export", trial


def user_model(minilm_ref, num_labels=2):
    return load_base_model(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, num_labels))


@pytest.fixture(scope="module")
def batch(minilm_ref):
    tokenizer = load_tokenizer(minilm_ref)
    return tokenizer(["a cat sat on the mat", "the dog barked at night"], return_tensors="pt", padding=True)


def test_apply_puts_every_module_type_in_and_trains_only_them(exported, minilm_ref, batch):
    folder, trial = exported
    model = user_model(minilm_ref)
    applied = autopeft.apply(model, folder)
    assert applied.num_trainable == trial.trainable_params
    assert set(applied.native) == {"serial_adapter", "parallel_adapter", "prefix"}
    optimizer = torch.optim.AdamW(applied.parameters, lr=1e-2)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = [p.detach().clone() for p in applied.parameters]
    for _ in range(2):
        loss = model(**batch, labels=torch.tensor([0, 1])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if n in frozen)
    assert sum(not torch.equal(a, b) for a, b in zip(before, applied.parameters)) >= len(before) - 2


def test_saved_adapter_reproduces_the_trained_outputs(exported, minilm_ref, batch, tmp_path):
    folder, _ = exported
    model = user_model(minilm_ref)
    applied = autopeft.apply(model, folder)
    with torch.no_grad():
        for parameter in applied.parameters:
            parameter.add_(torch.randn_like(parameter) * 0.05)  # stands in for training
        expected = model(**batch).logits
    autopeft.save_adapter(applied, tmp_path / "adapter")
    applied.remove()

    fresh = user_model(minilm_ref)
    loaded = autopeft.load_adapter(fresh, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(fresh(**batch).logits, expected, atol=1e-5)
    loaded.remove()


def _tuner(method, size):
    from autopeft.space.structure import TunerModules
    from autopeft.space.tuners import NORMS

    places = {(layer, NORMS) for layer in (4, 5)} if method == "ln_tuning" else {(4, "q"), (5, "v"), (5, "down")}
    return Structure(tuner=TunerModules(method, size, frozenset(places)))


HIDDEN_STATE = {
    **{method: _tuner(method, size) for method, size in
       [("vera", 64), ("shira", 8), ("sparse_magnitude", 8), ("sparse_principal", 8), ("boft", 8),
        ("fourierft", 256), ("ln_tuning", 0), ("bias", 0)]},
    "pissa": Structure(lora=LoraModules({(4, "q"): 4, (5, "down"): 8}, init="pissa")),
    "kasa+olora": Structure(lora=LoraModules({(4, "q"): 4, (5, "down"): 8}, variant="kasa", init="olora")),
}


@pytest.mark.parametrize("name", list(HIDDEN_STATE))
def test_structures_with_hidden_state_reload_exactly(name, shared_data, minilm_ref, batch, tmp_path):
    """Frozen random projections (VeRA), random masks and locations (SHiRA, FourierFT), butterfly
    factors (BOFT), norm copies, biases, and base weights rewritten by PiSSA, OLoRA and KaSA come
    back the same from an autopeft export on a fresh copy of the base model."""
    from autopeft.store import Store

    job = JobBuilder(Store(f"sqlite:///{tmp_path / 'store.db'}"), "minilm", str(shared_data / "glue" / "MRPC"))
    trial = job.trial(HIDDEN_STATE[name])
    export_trial(*job.records(trial), "autopeft", tmp_path / "export")
    model = user_model(minilm_ref)
    applied = autopeft.apply(model, tmp_path / "export")
    assert applied.num_trainable == trial.trainable_params
    with torch.no_grad():
        for parameter in applied.parameters:
            parameter.add_(torch.randn_like(parameter) * 0.05)
        expected = model(**batch).logits
    autopeft.save_adapter(applied, tmp_path / "adapter")
    applied.remove()
    fresh = user_model(minilm_ref)
    loaded = autopeft.load_adapter(fresh, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(fresh(**batch).logits, expected, atol=1e-5)
    loaded.remove()


def test_a_model_without_the_named_modules_is_refused(exported):
    from tests.space.tiny_models import tiny_llama

    with pytest.raises(ExportError, match="the model has no module 'classifier' that the autopeft config names"):
        autopeft.apply(tiny_llama(), exported[0])


def test_a_different_head_is_refused_and_the_model_left_as_it_was(exported, minilm_ref):
    model = user_model(minilm_ref, num_labels=3)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.raises(ExportError, match="trainable parameters on this model and .*is the task head the same"):
        autopeft.apply(model, exported[0])
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


def test_load_adapter_needs_the_weights(exported, minilm_ref, tmp_path):
    import shutil

    shutil.copytree(exported[0], tmp_path / "only-config")
    with pytest.raises(ExportError, match="no autopeft_adapter.safetensors in"):
        autopeft.load_adapter(user_model(minilm_ref), tmp_path / "only-config")



def test_apply_loads_only_torch_transformers_peft_and_autopeft():
    """The one call a training script needs must not pull in the search, store or service stacks."""
    probe = ("import sys, autopeft; autopeft.apply; print(','.join(sorted(n for n in "
             "('ray', 'botorch', 'optuna', 'fastapi', 'sqlalchemy', 'alembic', 'sklearn') if n in sys.modules)))")
    repository = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            cwd=repository, env={**os.environ, "PYTHONPATH": repository})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""
