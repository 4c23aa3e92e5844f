"""Binding a space to a model: dimensions, decoding, encoding, validity."""

import pytest

from autopeft.errors import SpaceError
from autopeft.space import parse_space
from autopeft.space.search_space import bind_space
from autopeft.space.structure import Structure
from tests.space.tiny_models import tiny_bert, tiny_gpt2, tiny_llama

PER_PLACEMENT = """
name: placement
modules:
  lora:
    roles: [query, value]
    rank: {choices: [0, 4, 8], per: placement}
"""


@pytest.fixture(scope="module")
def bert():
    return tiny_bert()


def test_roles_resolve_from_module_names_and_dimensions_follow_granularity(bert):
    space = bind_space(parse_space(PER_PLACEMENT), bert)
    assert space.lora_roles == ("q", "v")
    assert space.names == tuple(f"lora.rank.L{i}.{r}" for i in range(3) for r in ("q", "v"))


def test_decode_places_each_rank_and_zero_switches_off(bert):
    space = bind_space(parse_space(PER_PLACEMENT), bert)
    point = {name: 0 for name in space.names} | {"lora.rank.L0.q": 8, "lora.rank.L2.v": 4}
    structure = space.decode(point)
    assert dict(structure.lora.ranks) == {(0, "q"): 8, (2, "v"): 4}
    assert space.is_feasible(point)
    assert not space.is_feasible({name: 0 for name in space.names})


def test_encode_and_to_point_round_trip(bert):
    space = bind_space(parse_space(PER_PLACEMENT), bert)
    point = {name: 4 for name in space.names} | {"lora.rank.L1.q": 8}
    vector = space.encode(point)
    assert vector == [1.0, 1.0, 2.0, 1.0, 1.0, 1.0]
    assert space.to_point(vector) == point
    assert space.to_point([1.6, -3, 9, 0.4, 1, 1])["lora.rank.L0.v"] == 0  # rounded and clipped
    assert [low for low, _ in space.bounds] == [0.0] * 6


def test_a_schedule_s_knobs_act_only_under_a_schedule(bert):
    from autopeft.space import load_space_spec

    space = bind_space(load_space_spec("sparse"), bert)
    assert space.conditions["schedule.active"][0] == "schedule.kind"
    point = space.from_unit([0.3] * len(space.dimensions))
    unscheduled = {**point, "schedule.kind": "none"}
    periods = space.dimensions[space.names.index("schedule.period")].values
    other = next(v for v in periods if v != unscheduled["schedule.period"])
    assert space.encode({**unscheduled, "schedule.period": other}) == space.encode(unscheduled)
    scheduled = {**point, "schedule.kind": "lisa"}
    assert space.encode({**scheduled, "schedule.period": other}) != space.encode(scheduled)
    assert space.canonical(unscheduled)["schedule.period"] == periods[0]


def test_structure_round_trips_through_json(bert):
    from autopeft.space.structure import TunerModules

    space = bind_space(parse_space(PER_PLACEMENT), bert)
    structure = space.decode({name: 8 for name in space.names})
    assert Structure.from_json(structure.to_json()) == structure
    delora = Structure(tuner=TunerModules("delora", 4, frozenset({(0, "q")}), {"delora_lambda": 4.0}))
    assert delora.to_json()["tuner"]["settings"] == {"delora_lambda": 4.0}
    assert Structure.from_json(delora.to_json()) == delora
    assert "settings" not in Structure(tuner=TunerModules("delora", 4, frozenset({(0, "q")}))).to_json()["tuner"]


def test_unknown_role_names_the_file_key_and_known_roles(bert):
    text = PER_PLACEMENT.replace("[query, value]", "[query, wq]")
    with pytest.raises(SpaceError, match=r"^s.yaml: modules.lora.roles: unknown module 'wq' for model type 'bert' \(roles: q, k, v, o, up, down"):
        bind_space(parse_space(text, source="s.yaml"), bert)


def test_layer_outside_the_model_is_rejected(bert):
    text = PER_PLACEMENT + "layers: {include: [0, 7]}\n"
    with pytest.raises(SpaceError, match=r"layers.include: layer 7 does not exist \(the model has 3 layers"):
        bind_space(parse_space(text, source="s.yaml"), bert)


def test_layer_mask_role_switches_and_variants_are_dimensions(bert):
    text = """
name: rich
layers: {mask: true}
modules:
  lora: {roles: [q, v], search_roles: true, rank: {choices: [0, 2, 8], per: layer}, variants: [lora, dora]}
"""
    space = bind_space(parse_space(text), bert)
    assert space.names == (
        "layers.L0", "layers.L1", "layers.L2", "lora.role.q", "lora.role.v",
        "lora.rank.L0", "lora.rank.L1", "lora.rank.L2", "lora.variant",
    )
    point = {"layers.L0": True, "layers.L1": False, "layers.L2": True, "lora.role.q": False,
             "lora.role.v": True, "lora.rank.L0": 2, "lora.rank.L1": 8, "lora.rank.L2": 0, "lora.variant": "dora"}
    structure = space.decode(point)
    assert dict(structure.lora.ranks) == {(0, "v"): 2}
    assert structure.lora.variant == "dora"


def test_trainable_cap_makes_points_infeasible(bert):
    capped = bind_space(parse_space(PER_PLACEMENT + "max_trainable_fraction: 0.001\n"), bert)
    assert not capped.is_feasible({name: 8 for name in capped.names})


def test_gpt2_fused_qkv_and_llama_gated_ffn_roles():
    gpt2 = bind_space(parse_space(PER_PLACEMENT.replace("[query, value]", "[c_attn, c_fc]")), tiny_gpt2())
    assert gpt2.lora_roles == ("qkv", "up")
    assert gpt2.layout.matrix(0, "qkv").conv1d
    llama = bind_space(parse_space(PER_PLACEMENT.replace("[query, value]", "[gate_proj, k]")), tiny_llama())
    assert llama.lora_roles == ("gate", "k")
    assert llama.layout.layers[0].kv_width == 16  # 2 key/value heads of width 8


def test_autopeft_space_resolves_hidden_and_shares_one_layer_mask(bert):
    from autopeft.space import load_space_spec

    space = bind_space(load_space_spec("autopeft"), bert)  # hidden size 32
    assert space.names == ("layers.L0", "layers.L1", "layers.L2", "serial_adapter.size",
                           "parallel_adapter.size", "prefix.length")
    assert space.dimensions[3].values == (0, 1, 3, 6, 12, 24, 32)
    point = {"layers.L0": True, "layers.L1": False, "layers.L2": True,
             "serial_adapter.size": 12, "parallel_adapter.size": 0, "prefix.length": 32}
    structure = space.decode(point)
    assert dict(structure.serial_adapter) == {0: 12, 2: 12}
    assert dict(structure.prefix) == {0: 32, 2: 32}
    assert structure.parallel_adapter == {}


def test_layer_groups_share_per_layer_dimensions():
    from autopeft.space import load_space_spec

    llama = tiny_llama()  # 3 layers, so the decoder space's 6 groups collapse to one per layer
    space = bind_space(load_space_spec("decoder"), llama)
    assert [n for n in space.names if n.startswith("layers.")] == ["layers.G0", "layers.G1", "layers.G2"]
    text = PER_PLACEMENT.replace("name: placement", "name: g\nlayers: {groups: 2}").replace("[query, value]", "[q, v]")
    grouped = bind_space(parse_space(text), llama)
    assert grouped.units == {0: "G0", 1: "G0", 2: "G1"}
    assert "lora.rank.G0.q" in grouped.names and "lora.rank.G1.v" in grouped.names
    point = {name: 0 for name in grouped.names} | {"lora.rank.G0.q": 4}
    assert dict(grouped.decode(point).lora.ranks) == {(0, "q"): 4, (1, "q"): 4}


def test_budgeted_space_searches_four_numbers_and_allocates_within_budget(minilm_ref):
    from autopeft.errors import SpaceError
    from autopeft.models import TaskHead, build_skeleton
    from autopeft.space import load_space_spec
    from autopeft.tasks import TaskKind

    skeleton = build_skeleton(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, 2))
    space = bind_space(load_space_spec("budgeted"), skeleton)
    assert space.names == ("budget.fraction", "budget.rule", "budget.sharpness", "budget.variant")
    assert space.needed_sensitivities == ("spt", "ist")
    point = {"budget.fraction": 0.02, "budget.rule": "uniform", "budget.sharpness": 0.0, "budget.variant": "lora"}
    params = space.trainable_params(point)
    budget = 0.02 * space.layout.total_params
    assert 0.9 * budget <= params <= budget
    assert space.is_feasible(point)
    with pytest.raises(SpaceError, match="rule 'spt' needs SPT scores"):
        space.decode({**point, "budget.rule": "spt"})


def test_space_file_needs_modules_or_budget_but_not_both():
    from autopeft.errors import SpaceError

    with pytest.raises(SpaceError, match="declare either modules"):
        parse_space("name: x\n", source="s.yaml")


def test_lora_inits_are_a_searched_choice_and_conv1d_models_lose_what_peft_cannot_do_there():
    from autopeft.space.structure import LoraModules

    text = """
name: inits
modules:
  lora:
    roles: [query, value]
    rank: {choices: [4, 8]}
    variants: [lora, kasa]
    inits: [default, pissa, olora]
"""
    bert = bind_space(parse_space(text), tiny_bert())
    dims = {d.name: d for d in bert.dimensions}
    assert dims["lora.init"].values == ("default", "pissa", "olora")
    assert dims["lora.variant"].values == ("lora", "kasa")
    point = {name: d.values[-1] if hasattr(d, "values") else True for name, d in dims.items()}
    lora = bert.decode(point).lora
    assert isinstance(lora, LoraModules) and (lora.init, lora.variant) == ("olora", "kasa")
    gpt2 = bind_space(parse_space(text.replace("[query, value]", "[c_attn]")), tiny_gpt2())
    assert "lora.variant" not in {d.name for d in gpt2.dimensions}  # only plain LoRA is left
    assert {d.name: d for d in gpt2.dimensions}["lora.init"].values == ("default", "pissa")
    assert bert.measured_inits == {}


def test_a_space_offering_data_driven_inits_asks_for_them_at_its_largest_rank_on_the_model():
    text = """
name: eva
modules:
  lora:
    roles: [query, value]
    rank: {choices: [0, 4, 16, 64]}
    inits: [default, eva, corda]
"""
    bert = bind_space(parse_space(text), tiny_bert())
    assert {d.name: d for d in bert.dimensions}["lora.init"].values == ("default", "eva", "corda")
    assert bert.layout.hidden_size == 32  # ranks above the width are dropped
    assert bert.measured_inits == {"eva": 16, "corda": 16}


def test_a_schedule_is_searched_on_top_of_the_structure_and_ist_needs_its_scores():
    import pytest as _pytest

    from autopeft.errors import SpaceError
    from autopeft.space.sensitivity import Sensitivity

    text = """
name: scheduled
modules:
  lora: {roles: [query, value], rank: {choices: [4]}}
schedule: {kinds: [none, lisa, ist], active: [1, 2], period: [5, 20]}
"""
    space = bind_space(parse_space(text), tiny_bert())
    assert {"schedule.kind", "schedule.active", "schedule.period"} <= set(space.names)
    assert space.needed_sensitivities == ("ist",)
    point = {"schedule.kind": "lisa", "schedule.active": 2, "schedule.period": 20}
    schedule = space.decode(point).schedule
    assert (schedule.kind, schedule.active, schedule.period, schedule.weights) == ("lisa", 2, 20, ())
    assert space.decode({**point, "schedule.kind": "none"}).schedule is None
    assert space.trainable_params(point) == space.trainable_params({**point, "schedule.kind": "none"})
    with _pytest.raises(SpaceError, match="needs IST scores"):
        space.decode({**point, "schedule.kind": "ist"})
    scored = space.with_sensitivities({"ist": Sensitivity("ist", layer_importance=(0.1, 0.5, 0.2))})
    assert scored.decode({**point, "schedule.kind": "ist"}).schedule.weights == (0.1, 0.5, 0.2)
    with _pytest.raises(SpaceError, match=r"schedule.active: 3 layers at a time leaves none out of the 3 layers"):
        bind_space(parse_space(text.replace("active: [1, 2]", "active: [1, 3]")), tiny_bert())
