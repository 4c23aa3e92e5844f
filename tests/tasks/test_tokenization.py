"""tokenize_split and TokenizedSplit.batch with the real MiniLM tokenizer and a tiny causal one."""

from __future__ import annotations

import pytest
import torch

from autopeft.errors import ModelError
from autopeft.tasks import Split, TaskKind, load_task, tokenize_split
from autopeft.tasks.tokenization import IGNORE_INDEX

# Tiny tokenizer ids (see conftest): <s>=1 </s>=2 ###=3 Instruction:=4 Response:=6 say=7 hi=8
# hello=9 there=10 world=11 the=12 quick=14 brown=15 fox=16 jumps=17 over=18 lazy=19 dog=20.
CLS, SEP = 101, 102
MASK = IGNORE_INDEX


def test_single_sentences_batch_with_dynamic_padding(minilm_tokenizer):
    split = Split(texts=(("short one",), ("a somewhat longer sentence than that",)), labels=(0, 1))
    tokenized = tokenize_split(split, TaskKind.CLASSIFICATION, minilm_tokenizer, max_length=32)
    lengths = [len(ids) for ids in tokenized.input_ids]
    assert all(ids[0] == CLS and ids[-1] == SEP for ids in tokenized.input_ids)
    batch = tokenized.batch([0, 1])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape == (2, max(lengths)) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert batch["input_ids"][0, lengths[0] :].tolist() == [minilm_tokenizer.pad_token_id] * (max(lengths) - lengths[0])
    assert batch["token_type_ids"].eq(0).all()
    assert batch["labels"].tolist() == [0, 1] and batch["labels"].dtype == torch.long
    # A batch pads only to its own longest example.
    assert tokenized.batch([0])["input_ids"].shape == (1, lengths[0])


def test_sentence_pairs_get_segment_ids_and_longest_first_truncation(minilm_tokenizer):
    long_text = " ".join(["word"] * 50)
    split = Split(texts=((long_text, "a short question"),), labels=(2.5,))
    tokenized = tokenize_split(split, TaskKind.REGRESSION, minilm_tokenizer, max_length=16)
    ids, segments = tokenized.input_ids[0], tokenized.token_type_ids[0]
    assert len(ids) == 16 and ids.count(SEP) == 2
    second_segment = ids[ids.index(SEP) + 1 :]
    assert minilm_tokenizer.decode(second_segment[:-1]) == "a short question"
    assert segments == [0] * (16 - len(second_segment)) + [1] * len(second_segment)
    labels = tokenized.batch([0])["labels"]
    assert labels.dtype == torch.float32 and labels.tolist() == [2.5]


def test_batches_feed_a_real_sequence_classifier(minilm_path, minilm_tokenizer):
    from transformers import AutoModelForSequenceClassification

    task = load_task("demo")
    tokenized = tokenize_split(task.dev.subset(8, seed=0), task.kind, minilm_tokenizer, max_length=64)
    assert max(len(ids) for ids in tokenized.input_ids) <= 64
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=task.num_labels)
    with torch.no_grad():
        output = model(**tokenized.batch(range(8)))
    assert output.logits.shape == (8, 2) and torch.isfinite(output.loss)


INSTRUCTIONS = Split(
    texts=(
        ("### Instruction: say hi ### Response:", "hello there"),
        ("### Instruction: say world ### Response:", "world"),
    ),
    labels=None,
)


def test_instruction_labels_cover_only_the_response_and_eos(tiny_causal_tokenizer):
    tokenized = tokenize_split(INSTRUCTIONS, TaskKind.CAUSAL_LM, tiny_causal_tokenizer, max_length=64)
    assert tokenized.input_ids == [[1, 3, 4, 7, 8, 3, 6, 9, 10, 2], [1, 3, 4, 7, 11, 3, 6, 11, 2]]
    assert tokenized.labels == [[MASK] * 7 + [9, 10, 2], [MASK] * 7 + [11, 2]]
    assert tokenized.token_type_ids is None


def test_causal_batch_pads_with_eos_and_masks_padding(tiny_causal_tokenizer):
    assert tiny_causal_tokenizer.pad_token_id is None
    batch = tokenize_split(INSTRUCTIONS, TaskKind.CAUSAL_LM, tiny_causal_tokenizer, max_length=64).batch([1, 0])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[1, 3, 4, 7, 11, 3, 6, 11, 2, 2], [1, 3, 4, 7, 8, 3, 6, 9, 10, 2]]
    assert batch["attention_mask"].tolist() == [[1] * 9 + [0], [1] * 10]
    assert batch["labels"].tolist() == [[MASK] * 7 + [11, 2, MASK], [MASK] * 7 + [9, 10, 2]]
    assert batch["labels"].dtype == torch.long


def test_overlong_instruction_keeps_half_the_length_for_the_response(tiny_causal_tokenizer):
    prompt = "### Instruction: the quick brown fox jumps over the lazy dog ### Response:"  # 1 + 13 tokens
    split = Split(texts=((prompt, "hello there world hello there"),), labels=None)
    tokenized = tokenize_split(split, TaskKind.CAUSAL_LM, tiny_causal_tokenizer, max_length=8)
    assert tokenized.input_ids == [[1, 3, 4, 12, 9, 10, 11, 9]]
    assert tokenized.labels == [[MASK] * 4 + [9, 10, 11, 9]]  # cut response: no EOS
    short_prompt = Split(texts=(("say", "hello there world hello there world"),), labels=None)
    tokenized = tokenize_split(short_prompt, TaskKind.CAUSAL_LM, tiny_causal_tokenizer, max_length=8)
    assert tokenized.labels == [[MASK, MASK, 9, 10, 11, 9, 10, 11]]


def test_plain_text_chunks_carry_loss_on_every_token(tiny_causal_tokenizer):
    split = Split(texts=(("the quick brown fox jumps over the lazy dog",), ("hello world",)), labels=None)
    tokenized = tokenize_split(split, TaskKind.CAUSAL_LM, tiny_causal_tokenizer, max_length=5)
    assert tokenized.input_ids == [[1, 12, 14, 15, 16], [1, 9, 11]]
    assert tokenized.labels == tokenized.input_ids
    assert tokenized.batch([0, 1])["labels"].tolist() == [[1, 12, 14, 15, 16], [1, 9, 11, MASK, MASK]]


def test_a_causal_model_learns_from_response_tokens_only(tiny_causal_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=21, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    batch = tokenize_split(INSTRUCTIONS, TaskKind.CAUSAL_LM, tiny_causal_tokenizer, max_length=32).batch([0, 1])
    with torch.no_grad():
        output = model(**batch)
    # The model shifts labels itself: position t predicts labels[t + 1].
    predicted, targets = output.logits[:, :-1], batch["labels"][:, 1:]
    scored = targets != MASK
    assert scored.sum() == 5  # "hello there </s>" and "world </s>"
    expected = torch.nn.functional.cross_entropy(predicted[scored], targets[scored])
    assert output.loss == pytest.approx(expected.item(), rel=1e-5)


def test_instruction_data_needs_an_eos_token(minilm_tokenizer):
    with pytest.raises(ModelError, match="no EOS token"):
        tokenize_split(INSTRUCTIONS, TaskKind.CAUSAL_LM, minilm_tokenizer, max_length=16)


def test_mixed_field_counts_and_empty_batches_are_rejected(minilm_tokenizer):
    mixed = Split(texts=(("one",), ("one", "two")), labels=(0, 1))
    with pytest.raises(ValueError, match="same number"):
        tokenize_split(mixed, TaskKind.CLASSIFICATION, minilm_tokenizer, max_length=16)
    tokenized = tokenize_split(mixed.subset(1, seed=0), TaskKind.CLASSIFICATION, minilm_tokenizer, max_length=16)
    with pytest.raises(ValueError, match="at least one"):
        tokenized.batch([])
