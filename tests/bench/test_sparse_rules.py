"""The sparse-rules benchmark's table: every rule paired with LoRA at the same r and seed, and
step times compared with LoRA's within one timing round."""

import pytest

from bench.sparse_rules import TIMING_ROUNDS, step_time_ratios, structure, table
from autopeft.models import build_skeleton, resolve_model
from autopeft.models.loading import TaskHead
from autopeft.space.cost import count_trainable
from autopeft.space.layout import read_layout
from autopeft.space.structure import Structure
from autopeft.tasks import TaskKind


@pytest.fixture(scope="module")
def minilm_layout():
    return read_layout(build_skeleton(resolve_model("minilm"), TaskHead(TaskKind.CLASSIFICATION, 2)))


def test_the_table_pairs_each_rule_with_lora_at_the_same_size_and_seed():
    rows = [
        {"arm": arm, "size": 6, "seed": seed, "accuracy": accuracy, "lr_rescues": 0.0, "trainable": 55_298,
         "step_time_s": step}
        for arm, accuracies, step in [("lora", (0.80, 0.82, 0.81), 0.5), ("lottery", (0.82, 0.83, 0.83), 0.6)]
        for seed, accuracy in enumerate(accuracies)
    ]
    lines = table(rows, 22_713_986, {("lora", 6): 1.0, ("lottery", 6): 1.2}).splitlines()
    assert lines[2].startswith("| 6 | lora | 55,298 (0.24%) | 0.8100 | 0.0100 | 3 | — | 1.00 | 0 |")
    assert lines[3].startswith("| 6 | lottery | 55,298 (0.24%) | 0.8267 | 0.0058 | 3 | +0.0167 [")
    assert lines[3].endswith("| 1.20 | 0 |") and len(lines) == 4


def test_lora_a_sparse_update_and_dsee_at_the_same_r_train_the_same_count_on_the_same_matrices(minilm_layout):
    lora, sparse, dsee = (structure(arm, 6, minilm_layout) for arm in ("lora", "sensitivity", "dsee"))
    assert isinstance(sparse, Structure) and sparse.tuner.method == "sparse_sensitivity" and sparse.tuner.size == 6
    assert set(lora.lora.ranks) == sparse.tuner.places and set(lora.lora.ranks.values()) == {6}
    assert set(dsee.lora.ranks) == set(dsee.sparse.entries) == sparse.tuner.places
    counts = {count_trainable(s, minilm_layout) for s in (lora, sparse, dsee)}
    assert counts == {56_066}


def test_step_time_ratios_pair_each_arm_with_lora_in_the_same_round():
    """A slow round slows every arm in it; the median of in-round ratios ignores it."""
    slowdown = [1.0, 3.0, 1.1][:TIMING_ROUNDS]
    timings = [{"round": r, "arm": arm, "size": 6, "step_time_s": base * slowdown[r]}
               for r in range(TIMING_ROUNDS) for arm, base in (("lora", 0.5), ("dsee", 0.6))]
    ratios = step_time_ratios(timings)
    assert ratios[("lora", 6)] == 1.0 and ratios[("dsee", 6)] == pytest.approx(1.2)
