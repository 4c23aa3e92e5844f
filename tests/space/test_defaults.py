"""Practitioner defaults: found in the spaces that can express them, exactly, and nowhere else."""

from __future__ import annotations

import pytest

from autopeft.injection import apply_structure
from autopeft.models import build_skeleton
from autopeft.space import load_space_spec, parse_space
from autopeft.space.defaults import practitioner_defaults
from autopeft.space.layout import read_layout
from autopeft.space.search_space import bind_space
from autopeft.tasks import load_task
from tests.space.tiny_models import tiny_bert, tiny_llama


@pytest.fixture(scope="module")
def minilm_skeleton(minilm_ref):
    return build_skeleton(minilm_ref, load_task("demo"))


def test_lora_space_on_minilm_holds_lora_r8_qv_and_all_linear_with_their_known_counts(minilm_skeleton):
    space = bind_space(load_space_spec("lora"), minilm_skeleton)
    found = {d.label: d.point for d in practitioner_defaults(space)}
    assert list(found) == ["LoRA r8 q,v", "LoRA r8 all-linear"]  # the lora space has no IA3
    assert space.trainable_params(found["LoRA r8 q,v"]) == 74_498  # 6 layers x 2 x r8 x (384+384), plus the head
    qv = space.decode(found["LoRA r8 q,v"])
    assert set(qv.lora.ranks.values()) == {8} and {role for _, role in qv.lora.ranks} == {"q", "v"}
    assert len(space.decode(found["LoRA r8 all-linear"]).lora.ranks) == 6 * 6


def test_decoder_space_on_a_llama_holds_all_three_and_ia3_sits_on_k_v_down():
    model = tiny_llama()
    space = bind_space(load_space_spec("decoder"), model)
    found = {d.label: d.point for d in practitioner_defaults(space)}
    assert list(found) == ["LoRA r8 q,v", "LoRA r8 all-linear", "IA3"]
    ia3 = space.decode(found["IA3"])
    assert ia3.lora is None and {role for _, role in ia3.ia3} == {"k", "v", "down"} and len(ia3.ia3) == 3 * 3
    applied = apply_structure(model, ia3, read_layout(model))  # the point builds on a real model
    assert applied.num_trainable == space.trainable_params(found["IA3"])
    applied.remove()


@pytest.mark.parametrize("name", ["autopeft", "budgeted"])
def test_spaces_without_lora_or_ia3_choices_have_no_defaults(name, minilm_skeleton):
    assert practitioner_defaults(bind_space(load_space_spec(name), minilm_skeleton)) == []


def test_a_space_without_rank_8_or_with_a_layer_subset_cannot_express_them():
    model = tiny_bert()
    no_eight = "name: x\nmodules: {lora: {roles: [q, v], rank: {choices: [0, 4, 16], per: layer}}}\n"
    subset = "name: y\nlayers: {include: [0, 1]}\nmodules: {lora: {roles: [q, v], rank: {choices: [0, 8], per: layer}}}\n"
    assert practitioner_defaults(bind_space(parse_space(no_eight), model)) == []
    assert practitioner_defaults(bind_space(parse_space(subset), model)) == []


def test_method_spaces_hold_them_through_the_method_choice_and_leave_schedules_off(minilm_skeleton):
    methods = bind_space(load_space_spec("methods"), minilm_skeleton)
    found = {d.label: d.point for d in practitioner_defaults(methods)}
    assert list(found) == ["LoRA r8 q,v", "LoRA r8 all-linear", "IA3"]
    assert methods.trainable_params(found["LoRA r8 q,v"]) == 74_498  # as in the lora space
    assert {role for _, role in methods.decode(found["IA3"]).ia3} == {"k", "v", "down"}
    sparse = bind_space(load_space_spec("sparse"), minilm_skeleton)  # LoRA, no IA3, plus layer schedules
    found = {d.label: d.point for d in practitioner_defaults(sparse)}
    assert list(found) == ["LoRA r8 q,v", "LoRA r8 all-linear"]
    assert sparse.decode(found["LoRA r8 q,v"]).schedule is None
