"""Prefixes keep the attention semantics: causality for decoders, padding for every model."""

import pytest
import torch

from autopeft.injection import apply_structure
from autopeft.space.layout import read_layout
from autopeft.space.structure import Structure
from tests.space.tiny_models import tiny_bert, tiny_gpt2, tiny_llama, tiny_t5


def with_prefix(model, lengths):
    layout = read_layout(model)
    applied = apply_structure(model, Structure(prefix=lengths), layout)
    with torch.no_grad():
        for prefix in applied.native["prefix"].values():
            prefix.keys.normal_(0, 1.0)
            prefix.values.normal_(0, 1.0)
    return applied


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama], ids=["gpt2", "llama"])
def test_decoder_prefix_keeps_causality(make):
    torch.manual_seed(0)
    model = make()
    applied = with_prefix(model, {0: 3, 2: 2})
    ids = torch.randint(1, 99, (1, 8))
    changed = ids.clone()
    changed[0, 5:] = torch.randint(1, 99, (3,))
    try:
        with torch.no_grad():
            original, edited = model(input_ids=ids).logits, model(input_ids=changed).logits
        assert torch.allclose(original[0, :5], edited[0, :5], atol=1e-5)  # the past cannot see the future
        assert not torch.allclose(original[0, 5:], edited[0, 5:])
    finally:
        applied.remove()


@pytest.mark.parametrize("make", [tiny_bert, tiny_gpt2, tiny_llama], ids=["bert", "gpt2", "llama"])
def test_prefix_respects_padding(make):
    torch.manual_seed(0)
    model = make()
    applied = with_prefix(model, {1: 4})
    ids = torch.randint(1, 99, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    try:
        with torch.no_grad():
            alone = model(input_ids=ids[1:, :6], attention_mask=mask[1:, :6]).logits
            batched = model(input_ids=ids, attention_mask=mask).logits[1:]
        if model.config.model_type == "bert":
            assert torch.allclose(alone, batched, atol=1e-5)
        else:
            assert torch.allclose(alone[:, :6], batched[:, :6], atol=1e-5)
    finally:
        applied.remove()


def test_prefix_changes_every_t5_stack_it_is_placed_in():
    torch.manual_seed(0)
    model = tiny_t5()
    inputs = {"input_ids": torch.randint(1, 99, (1, 7)), "decoder_input_ids": torch.randint(1, 99, (1, 4))}
    with torch.no_grad():
        reference = model(**inputs).logits
    for layer in (0, 3):  # an encoder block, then a decoder block
        applied = with_prefix(model, {layer: 2})
        try:
            with torch.no_grad():
                assert not torch.allclose(model(**inputs).logits, reference)
        finally:
            applied.remove()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reference)
