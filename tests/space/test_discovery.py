import dataclasses

import pytest
import torch
from torch import nn
from transformers import PretrainedConfig

from autopeft.errors import SpaceError
from autopeft.models import TaskHead, build_skeleton, resolve_model
from autopeft.space.architectures import architecture_for
from autopeft.space.discovery import discover_architecture
from autopeft.space.layout import read_layout
from autopeft.space.schema import load_space_spec
from autopeft.space.search_space import bind_space
from autopeft.tasks import TaskKind
from tests.space.tiny_models import TINY_MODELS, tiny_opt, tiny_phi3

REGISTERED = ["bert", "distilbert", "gpt2", "llama", "t5"]


def discovered_layout(model):
    return read_layout(model, discover_architecture(model).architecture)


@pytest.mark.parametrize("family", REGISTERED)
def test_discovery_finds_the_registered_layout_of_every_registered_family(family):
    model = TINY_MODELS[family]()
    registered = read_layout(model, architecture_for(model.config.model_type))
    assert dataclasses.replace(discovered_layout(model), family=registered.family) == registered


@pytest.mark.parametrize(
    ("name", "head"),
    [("minilm", TaskHead(TaskKind.CLASSIFICATION, 2)), ("smollm2", TaskHead(TaskKind.CAUSAL_LM, 0))],
)
def test_discovery_matches_the_registry_on_real_pretrained_models(name, head):
    skeleton = build_skeleton(resolve_model(name), head)
    registered = read_layout(skeleton)
    assert registered.family != "discovered"
    assert dataclasses.replace(discovered_layout(skeleton), family=registered.family) == registered


def test_phi3_fused_projections_are_found_and_spaces_naming_their_parts_get_the_fused_matrix():
    model = tiny_phi3()
    layout = read_layout(model)
    assert layout.family == "discovered"
    assert layout.roles == ("qkv", "o", "gate_up", "down")
    qkv = layout.matrix(0, "qkv")
    assert qkv.name == "model.layers.0.self_attn.qkv_proj"
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    assert layout.layers[0].kv_width == config.num_key_value_heads * head_dim  # GQA: keys narrower than queries
    assert layout.layers[0].ffn_input == layout.layers[0].ffn_output == "model.layers.0.mlp"
    space = bind_space(load_space_spec("lora"), model)  # names q, k, v, o, up, down
    assert space.lora_roles == ("qkv", "o", "gate_up", "down")


def test_an_unlisted_family_is_read_from_its_module_tree():
    layout = read_layout(tiny_opt())
    assert (layout.family, layout.model_type) == ("discovered", "opt")
    assert layout.roles == ("q", "k", "v", "o", "up", "down")
    first = layout.layers[0]
    assert first.ffn_input == "model.decoder.layers.0.fc1"  # directly in the block: its own boundary
    assert first.ffn_output == "model.decoder.layers.0.fc2"
    assert bind_space(load_space_spec("lora"), tiny_opt()).lora_roles == layout.roles


class _Config(PretrainedConfig):
    model_type = "toy-moe"


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.q_proj, self.attn.k_proj, self.attn.v_proj = (nn.Linear(8, 8) for _ in range(3))
        self.attn.o_proj = nn.Linear(8, 8)
        self.mlp = nn.Module()
        self.mlp.experts = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
        self.mlp.router = nn.Linear(8, 2)


class _MoE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = _Config(hidden_size=8)
        self.layers = nn.ModuleList(_Block() for _ in range(2))


def test_experts_are_skipped_and_unnamed_matrices_keep_their_leaf_name():
    discovery = discover_architecture(_MoE())
    assert discovery.architecture.layer_lists == ("layers",)
    assert discovery.skipped == ("mlp.experts.0", "mlp.experts.1")
    assert discovery.unnamed == ("mlp.router",)
    assert list(discovery.architecture.roles) == ["q", "k", "v", "o", "router"]


def test_a_model_without_repeated_blocks_gets_one_clear_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model.config = _Config(hidden_size=4)
    with pytest.raises(SpaceError, match="found no repeated blocks.*'architecture:'"):
        read_layout(model)


def test_discovered_layouts_build_on_the_meta_device():
    with torch.device("meta"):
        model = tiny_phi3()
    assert read_layout(model).roles == ("qkv", "o", "gate_up", "down")
