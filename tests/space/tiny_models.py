"""Tiny randomly initialised models of every registered family, and of families the registry does
not list (their layouts are discovered: OPT, and Phi-3 with fused qkv and gate_up), for fast
structural tests."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)


def tiny_bert(num_labels: int = 2) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=64, num_labels=num_labels,
    )
    return BertForSequenceClassification(config).eval()


def tiny_distilbert() -> DistilBertForSequenceClassification:
    config = DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=64)
    return DistilBertForSequenceClassification(config).eval()


def tiny_gpt2() -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=99, n_embd=32, n_layer=3, n_head=4, n_positions=64)
    return GPT2LMHeadModel(config).eval()


def tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=40, max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def tiny_phi3() -> Phi3ForCausalLM:
    config = Phi3Config(
        vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=40, max_position_embeddings=64, pad_token_id=0,
    )
    return Phi3ForCausalLM(config).eval()


def tiny_opt() -> OPTForCausalLM:
    config = OPTConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=40,
        max_position_embeddings=64, word_embed_proj_dim=32,
    )
    return OPTForCausalLM(config).eval()


def tiny_t5() -> T5ForConditionalGeneration:
    config = T5Config(
        vocab_size=99, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_decoder_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(config).eval()


TINY_MODELS = {
    "bert": tiny_bert,
    "distilbert": tiny_distilbert,
    "gpt2": tiny_gpt2,
    "llama": tiny_llama,
    "opt": tiny_opt,
    "phi3": tiny_phi3,
    "t5": tiny_t5,
}


def example_inputs(model) -> dict[str, torch.Tensor]:
    """A padded batch of two sequences that the model's forward accepts (shapes (2, 10))."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 99, (2, 10), generator=generator)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 7:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if model.config.model_type == "t5":
        inputs["decoder_input_ids"] = torch.randint(1, 99, (2, 6), generator=generator)
    return inputs
