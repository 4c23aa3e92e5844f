"""ComPEFT: top-k sparsification and ternary storage of trained update tensors.

The pure functions are checked on random tensors; one test compresses a LoRA briefly trained with
``autopeft train`` on the real MiniLM and the shipped demo task, and loads it back through
``autopeft.apply``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from autopeft.errors import ExportError
from autopeft.export.compeft import (
    check_density,
    compress_tensors,
    decompress_tensors,
    expand,
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


QUICK = dict(epochs=1, learning_rate=2e-3, batch_size=16, max_length=32, train_examples=64)


@pytest.mark.slow
def test_a_trained_lora_compresses_reports_sizes_and_dev_and_loads_back_through_apply(tmp_path, minilm_ref):
    from autopeft.export.compeft_format import load_compressed, named_trainable
    from autopeft.models import TaskHead, load_base_model
    from autopeft.store import Store
    from autopeft.tasks import TaskKind
    from autopeft.training import TrainingOptions
    from autopeft.training.compress import compress_trial
    from autopeft.training.run import train_config
    from autopeft.training.sources import config_of_trial, model_of, task_of
    from tests.export.conftest import JobBuilder, grid, lora

    job = JobBuilder(Store(f"sqlite:///{tmp_path / 'store.db'}"), "minilm", "demo")
    config = config_of_trial(*job.records(job.trial(lora(grid((4, 5), "qv"), rank=4))))
    task = task_of(config)
    with pytest.raises(ExportError, match=r"trial 0 of job \d+ has no trained weights in .*autopeft train"):
        compress_trial(config, tmp_path / "weights", 0.1, task, tmp_path / "compressed")
    train_config(config, model_of(config), task, TrainingOptions(**QUICK), tmp_path / "weights")

    report = compress_trial(config, tmp_path / "weights", 0.1, task, tmp_path / "compressed")
    assert report.bytes_after < report.bytes_before / 4 and report.path.stat().st_size == report.bytes_after
    assert {"accuracy", "loss"} <= set(report.dev_before) and {"accuracy", "loss"} <= set(report.dev_after)
    loaded = load_compressed(load_base_model(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, 2)), tmp_path / "compressed")
    assert loaded.num_trainable == config.trainable_params
    for name, tensor in named_trainable(loaded).items():
        if "lora_" in name:  # B starts at 0 and A at a random draw: both are stored as 10% of their entries
            assert int((tensor != 0).sum()) == math.ceil(0.1 * tensor.numel()), name
            assert tensor[tensor != 0].abs().unique().numel() == 1, name
