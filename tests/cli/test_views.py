"""One-line structure summaries in the CLI's tables name what sets a structure apart."""

from autopeft.cli.views import structure_summary
from autopeft.space.structure import LoraModules, Structure, TunerModules


def test_a_summary_names_the_lora_variant_and_a_non_default_init():
    ranks = {(0, "q"): 4, (1, "v"): 8}
    assert structure_summary(Structure(lora=LoraModules(ranks)).to_json()) == "lora r{4,8} on q,v in 2 layers"
    eva = Structure(lora=LoraModules(ranks, variant="dora", init="eva")).to_json()
    assert structure_summary(eva) == "lora (dora, eva init) r{4,8} on q,v in 2 layers"
    adalora = Structure(tuner=TunerModules("adalora", 4, frozenset(ranks))).to_json()
    assert structure_summary(adalora) == "adalora 4 x2"


def test_a_summary_counts_sparse_deltas_and_the_next_export_uses_a_format_that_holds_the_structure():
    from datetime import datetime

    from autopeft.cli.views import next_commands
    from autopeft.space.structure import SparseDeltas
    from autopeft.store import DEFAULT_URL, TrialRecord
    from autopeft.trials import TrialState

    lora = LoraModules({(0, "q"): 4})
    spt = Structure(lora=lora, sparse=SparseDeltas({(1, "k"): 40, (2, "o"): 9}, "sensitivity"))
    assert structure_summary(spt.to_json()) == "lora r{4} on q in 1 layers; sparse deltas (sensitivity) 49 entries x2"

    def trial(structure):
        return TrialRecord(id=1, job_id=1, number=3, state=TrialState.COMPLETED, config={},
                           structure=structure.to_json(), trainable_params=1, seed=0, fidelity={}, worker=None,
                           created_at=datetime.now(), started_at=None, finished_at=None, wall_time_s=None,
                           step_time_s=None, peak_memory_bytes=None, error=None, values={})

    assert "--trial 3 --format autopeft" in next_commands(1, trial(spt), DEFAULT_URL)
    assert "--trial 3 --format peft" in next_commands(1, trial(Structure(lora=lora)), DEFAULT_URL)
    corda = LoraModules({(0, "q"): 4}, init="corda")  # peft loads it after preprocess_corda reads the shipped cache
    assert "--trial 3 --format peft" in next_commands(1, trial(Structure(lora=corda)), DEFAULT_URL)
