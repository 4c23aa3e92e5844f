"""The space-vs-lora benchmark's pure parts: naming structures and reading each job's front."""

from bench.space_vs_lora import front_kinds, kind
from autopeft.space.structure import LoraModules, SparseDeltas, Structure, TunerModules


def test_each_structure_is_named_by_what_it_trains():
    lora = LoraModules({(0, "q"): 2}, variant="dora")
    assert kind(Structure(lora=lora)) == "dora"
    assert kind(Structure(lora=lora, sparse=SparseDeltas({(0, "q"): 5}, "residual"))) == "dsee"
    assert kind(Structure(lora=lora, sparse=SparseDeltas({(0, "k"): 5}, "sensitivity"))) == "lora+sparse"
    assert kind(Structure(tuner=TunerModules("sparse_lottery", 1, {(0, "q")}))) == "sparse_lottery"


def test_the_front_counts_only_non_dominated_trials():
    rows = [{"accuracy": 0.8, "trainable_params": 1000, "kind": "lora"},
            {"accuracy": 0.7, "trainable_params": 2000, "kind": "dsee"},  # dominated by the first
            {"accuracy": 0.6, "trainable_params": 500, "kind": "sparse_random"}]
    assert front_kinds(rows) == {"lora": 1, "sparse_random": 1}
