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
