"""ComPEFT: top-k sparsification and ternary storage of trained update tensors.

The pure functions are checked on random tensors; the MiniLM tests compress a LoRA briefly trained
with ``autopeft train`` on the real MiniLM and the shipped demo task, and load it back through
``autopeft.apply``: LoRA A as its change from the initial draw, rebuilt bit for bit from the random
state the file records, and refused when that draw cannot be rebuilt.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from autopeft.errors import ExportError
from autopeft.export.compeft_format import RNG_STATE_KEY
from autopeft.export.compeft import (
    check_density,
    compress_tensors,
    decompress_tensors,
    expand,
    fingerprint,
    pack_bits,
    ternarize,
    unpack_bits,
)


@pytest.mark.parametrize("count", [1, 7, 8, 9, 1000])
def test_bits_pack_to_an_eighth_and_unpack_unchanged(count):
    bits = torch.rand(count, generator=torch.Generator().manual_seed(count)) > 0.5
    packed = pack_bits(bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(count / 8)
    assert torch.equal(unpack_bits(packed, count), bits)


@pytest.mark.parametrize("density", [0.05, 0.1, 0.5, 1.0])
def test_ternary_keeps_the_largest_entries_with_their_signs_and_the_mean_kept_magnitude(density):
    update = torch.randn(48, 40, generator=torch.Generator().manual_seed(0))
    restored = expand(**ternarize(update, density), shape=update.shape)
    kept = restored != 0
    assert int(kept.sum()) == math.ceil(density * update.numel())
    assert update.abs()[kept].min() >= (update.abs()[~kept].max() if (~kept).any() else 0)
    assert torch.equal(restored[kept].sign(), update[kept].sign())
    assert torch.allclose(restored[kept].abs(), update.abs()[kept].mean().expand(int(kept.sum())))


def test_fingerprints_ignore_order_and_see_one_changed_bit():
    tensors = [torch.randn(8, 384, generator=torch.Generator().manual_seed(2)), torch.zeros(384, 8)]
    assert fingerprint(tensors) == fingerprint([tensors[1].clone(), tensors[0].clone()])
    flipped = tensors[0].clone()
    flipped.view(torch.int32)[3, 5] ^= 1
    assert fingerprint([flipped, tensors[1]]) != fingerprint(tensors)
    assert fingerprint([tensors[0].T.contiguous(), tensors[1]]) != fingerprint(tensors)


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_a_density_outside_zero_one_is_one_clear_error(density):
    with pytest.raises(ExportError, match=r"^--compress density must be in \(0, 1\], got "):
        check_density(density)


def test_compressed_dicts_hold_dense_tensors_unchanged_and_are_far_smaller():
    generator = torch.Generator().manual_seed(1)
    updates = {"layer.lora_A.weight": torch.randn(8, 384, generator=generator)}
    head = {"classifier.weight": torch.randn(2, 384, generator=generator)}
    stored = compress_tensors(updates, 0.1, head)
    dense = decompress_tensors(stored, {"layer.lora_A.weight": torch.Size([8, 384]), "classifier.weight": torch.Size([2, 384])})
    assert torch.equal(dense["classifier.weight"], head["classifier.weight"])
    assert int((dense["layer.lora_A.weight"] != 0).sum()) == math.ceil(0.1 * 8 * 384)
    compressed = sum(t.numel() * t.element_size() for k, t in stored.items() if k.startswith("layer."))
    assert compressed < updates["layer.lora_A.weight"].numel() * 4 / 20


def test_the_cli_refuses_a_density_outside_zero_one_in_one_line(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "autopeft", "export", "1", "--trial", "0", "--compress", "1.5", "--out", str(tmp_path / "x"),
         "--storage", f"sqlite:///{tmp_path / 'store.db'}"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --compress density must be in (0, 1], got 1.5"
    assert not (tmp_path / "x").exists()


QUICK_SEED = 0
QUICK = dict(epochs=1, learning_rate=2e-3, batch_size=16, max_length=32, train_examples=64, seed=QUICK_SEED,
             lr_rescues=0)  # four steps: too few to judge a stall


@pytest.fixture(scope="module")
def trained_lora(tmp_path_factory, minilm_ref):
    """(config, task, weights folder) of a LoRA r4 on q, v of layers 4-5 trained 4 steps on demo."""
    from autopeft.store import Store
    from autopeft.training import TrainingOptions
    from autopeft.training.run import train_config
    from autopeft.training.sources import config_of_trial, model_of, task_of
    from tests.export.conftest import JobBuilder, grid, lora

    folder = tmp_path_factory.mktemp("trained-lora")
    job = JobBuilder(Store(f"sqlite:///{folder / 'store.db'}"), "minilm", "demo")
    config = config_of_trial(*job.records(job.trial(lora(grid((4, 5), "qv"), rank=4))))
    task = task_of(config)
    train_config(config, model_of(config), task, TrainingOptions(**QUICK), folder / "weights")
    return config, task, folder / "weights"


def fresh_minilm(minilm_ref):
    from autopeft.models import TaskHead, load_base_model
    from autopeft.tasks import TaskKind

    return load_base_model(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, 2))


def initial_draw(config, minilm_ref, seed: int) -> dict[str, torch.Tensor]:
    """Name -> initial value of every trainable tensor, drawn as ``autopeft train`` draws them."""
    from transformers import set_seed

    from autopeft.api import apply
    from autopeft.export.compeft_format import named_trainable

    set_seed(seed)
    applied = apply(fresh_minilm(minilm_ref), config)
    return {name: p.detach().clone() for name, p in named_trainable(applied).items()}


def loaded_and_stored(folder, minilm_ref) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The trainable tensors ``load_compressed`` puts into a fresh MiniLM, and the file's raw tensors."""
    from safetensors.torch import load_file

    from autopeft.export.compeft_format import COMPRESSED_NAME, load_compressed, named_trainable

    loaded = {name: p.detach() for name, p in named_trainable(load_compressed(fresh_minilm(minilm_ref), folder)).items()}
    return loaded, load_file(str(folder / COMPRESSED_NAME))


@pytest.mark.slow
def test_a_trial_without_trained_weights_is_refused(tmp_path, trained_lora):
    from autopeft.training.compress import compress_trial

    config, task, _ = trained_lora
    with pytest.raises(ExportError, match=r"trial 0 of job \d+ has no trained weights in .*autopeft train"):
        compress_trial(config, tmp_path / "weights", 0.1, task, tmp_path / "compressed")


@pytest.mark.slow
def test_a_trained_lora_loads_back_as_its_initial_draw_plus_the_ternary_changes(tmp_path, trained_lora, minilm_ref):
    from autopeft.training.compress import compress_trial

    config, task, weights = trained_lora
    report = compress_trial(config, weights, 0.1, task, tmp_path / "compressed", seeded="delta")
    assert report.seeded == "delta"
    # 3x rather than ComPEFT's ~30x: this adapter is 53 kB, the dense head and the random state 6 kB
    assert report.bytes_after < report.bytes_before / 3 and report.path.stat().st_size == report.bytes_after
    assert {"accuracy", "loss"} <= set(report.dev_before) and {"accuracy", "loss"} <= set(report.dev_after)

    loaded, stored = loaded_and_stored(tmp_path / "compressed", minilm_ref)
    assert sum(t.numel() for t in loaded.values()) == config.trainable_params
    changes = decompress_tensors(stored, {name: t.shape for name, t in loaded.items()})
    initial = initial_draw(config, minilm_ref, QUICK_SEED)
    for name, tensor in loaded.items():
        if "lora_" in name:  # A and B: the run's initial draw plus 10% of the changes, ternary
            assert torch.equal(tensor, initial[name] + changes[name]), name
            assert int((changes[name] != 0).sum()) == math.ceil(0.1 * tensor.numel()), name
            assert changes[name][changes[name] != 0].abs().unique().numel() == 1, name
        else:  # the head, dense
            assert torch.equal(tensor, stored[name]), name

    stored[RNG_STATE_KEY] = torch.manual_seed(QUICK_SEED + 1).get_state()
    save_file(stored, str(report.path), metadata=safe_open(str(report.path), "pt").metadata())
    with pytest.raises(ExportError, match=r"^cannot rebuild the initial LoRA A draw that .* stores changes from"):
        loaded_and_stored(tmp_path / "compressed", minilm_ref)


@pytest.mark.slow
def test_by_default_lora_a_is_stored_dense_and_loads_back_as_trained(tmp_path, trained_lora, minilm_ref):
    from autopeft.training.compress import compress_trial

    config, task, weights = trained_lora
    assert compress_trial(config, weights, 0.1, task, tmp_path / "compressed").seeded == "dense"
    loaded, stored = loaded_and_stored(tmp_path / "compressed", minilm_ref)
    initial = initial_draw(config, minilm_ref, QUICK_SEED)
    assert RNG_STATE_KEY not in stored
    for name in (name for name in loaded if "lora_A" in name):
        assert torch.equal(loaded[name], stored[name]) and not torch.equal(loaded[name], initial[name]), name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda summary: summary.pop("initial_fingerprint"), r"records no fingerprint of the initial LoRA A draw"),
        (lambda summary: summary["options"].update(seed=QUICK_SEED + 1), r"the initialisation rebuilt from seed 1 differs"),
    ],
    ids=["no-fingerprint", "other-seed"],
)
def test_an_initialisation_that_cannot_be_verified_is_refused(tmp_path, trained_lora, edit, error):
    from autopeft.training.compress import compress_trial
    from autopeft.training.run import SUMMARY_NAME

    config, task, weights = trained_lora
    copy = shutil.copytree(weights, tmp_path / "weights")
    summary = json.loads((copy / SUMMARY_NAME).read_text())
    edit(summary)
    (copy / SUMMARY_NAME).write_text(json.dumps(summary))
    with pytest.raises(ExportError, match=error):
        compress_trial(config, copy, 0.1, task, tmp_path / "compressed", seeded="delta")
    assert not (tmp_path / "compressed").exists()
