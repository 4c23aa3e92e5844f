"""Tokenizing a split once per (model, max_length), and cutting padded batches from it.

Sequences are stored unpadded; :meth:`TokenizedSplit.batch` pads to the longest sequence of
the batch (dynamic padding, on the right).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from autopeft.errors import ModelError
from autopeft.tasks.task import Split, TaskKind

IGNORE_INDEX = -100  # label value that torch's cross-entropy (and HF models) leave out of the loss


@dataclass
class TokenizedSplit:
    """Token ids of every example of a split, with the labels the model is trained on.

    ``labels`` holds, per example: a class id (classification), a float (regression), or a
    token-level list as long as the example's ``input_ids`` (causal LM), with ``IGNORE_INDEX``
    on prompt tokens. ``token_type_ids`` is None when the model takes none.
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int] | list[float] | list[list[int]]
    kind: TaskKind
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The examples at ``indices`` as model inputs, padded to the batch's longest (T) sequence.

        Keys and shapes (B = ``len(indices)``):
        - ``input_ids``: (B, T) int64, padded with ``pad_token_id``;
        - ``attention_mask``: (B, T) int64, 1 on tokens and 0 on padding;
        - ``token_type_ids``: (B, T) int64, padded with 0, only when the model uses them;
        - ``labels``: (B,) int64 class ids for classification, (B,) float32 targets for
          regression, (B, T) int64 token ids for causal LM with ``IGNORE_INDEX`` (-100) on
          padding and prompt tokens (unshifted: HF causal-LM models shift them internally).
        """
        if len(indices) == 0:
            raise ValueError("a batch needs at least one example")
        rows = [int(i) for i in indices]
        sequences = [self.input_ids[i] for i in rows]
        width = max(len(sequence) for sequence in sequences)
        batch = {
            "input_ids": _padded(sequences, width, self.pad_token_id),
            "attention_mask": _padded([[1] * len(sequence) for sequence in sequences], width, 0),
        }
        if self.token_type_ids is not None:
            batch["token_type_ids"] = _padded([self.token_type_ids[i] for i in rows], width, 0)
        if self.kind == TaskKind.CAUSAL_LM:
            batch["labels"] = _padded([self.labels[i] for i in rows], width, IGNORE_INDEX)
        else:
            dtype = torch.long if self.kind == TaskKind.CLASSIFICATION else torch.float32
            batch["labels"] = torch.tensor([self.labels[i] for i in rows], dtype=dtype)
        return batch


def tokenize_split(split: Split, kind: TaskKind, tokenizer, max_length: int) -> TokenizedSplit:
    """Tokenize every example of ``split`` in one batched call, each to at most ``max_length`` tokens.

    Classification and regression: one text, or a pair joined by the tokenizer's special
    tokens and truncated ``longest_first``. Causal LM: ``(prompt, response)`` becomes prompt
    tokens, response tokens and EOS, with loss on the response and EOS only; when too long,
    the response keeps at least ``max_length // 2`` tokens and the rest is cut from the
    ends of prompt and response. ``(text,)`` chunks are truncated to ``max_length`` tokens
    and every token carries loss. Padding uses the pad token, or EOS when there is none.
    """
    kind = TaskKind(kind)
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 tokens, got {max_length}")
    if kind == TaskKind.CAUSAL_LM:
        return _tokenize_language_model(split, tokenizer, max_length)
    return _tokenize_labelled(split, kind, tokenizer, max_length)


def _tokenize_labelled(split: Split, kind: TaskKind, tokenizer, max_length: int) -> TokenizedSplit:
    if split.labels is None:
        raise ValueError(f"a {kind} split needs labels")
    fields = _text_columns(split)
    pair = len(fields) == 2
    encoded = tokenizer(
        fields[0],
        fields[1] if pair else None,
        truncation="longest_first" if pair else True,
        max_length=max_length,
    )
    uses_token_types = "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in encoded
    convert = int if kind == TaskKind.CLASSIFICATION else float
    return TokenizedSplit(
        input_ids=list(encoded["input_ids"]),
        token_type_ids=list(encoded["token_type_ids"]) if uses_token_types else None,
        labels=[convert(label) for label in split.labels],
        kind=kind,
        pad_token_id=_pad_token_id(tokenizer),
    )


def _tokenize_language_model(split: Split, tokenizer, max_length: int) -> TokenizedSplit:
    fields = _text_columns(split)
    if len(fields) == 1:
        input_ids = tokenizer(fields[0], truncation=True, max_length=max_length)["input_ids"]
        labels = [list(ids) for ids in input_ids]
    else:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ModelError(
                f"tokenizer {tokenizer.name_or_path!r} has no EOS token; instruction tuning needs one to end responses"
            )
        prompts = tokenizer(fields[0], truncation=True, max_length=max_length)["input_ids"]
        responses = tokenizer(fields[1], add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
        joined = [_prompt_then_response(p, [*r, eos], max_length) for p, r in zip(prompts, responses, strict=True)]
        input_ids = [ids for ids, _ in joined]
        labels = [token_labels for _, token_labels in joined]
    return TokenizedSplit(
        input_ids=[list(ids) for ids in input_ids],
        token_type_ids=None,
        labels=labels,
        kind=TaskKind.CAUSAL_LM,
        pad_token_id=_pad_token_id(tokenizer),
    )


def _prompt_then_response(prompt: list[int], response: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of prompt + response within ``max_length``; labels mask the prompt."""
    response_budget = min(len(response), max(max_length - len(prompt), max_length // 2))
    prompt = prompt[: max_length - response_budget]
    response = response[:response_budget]
    return prompt + response, [IGNORE_INDEX] * len(prompt) + response


def _text_columns(split: Split) -> list[list[str]]:
    """The split's texts as one list per field (1 or 2 fields, the same for every example)."""
    widths = {len(texts) for texts in split.texts}
    if len(widths) != 1 or not widths <= {1, 2}:
        raise ValueError(f"every example needs the same number (1 or 2) of text fields, found {sorted(widths)}")
    return [list(column) for column in zip(*split.texts, strict=True)]


def _pad_token_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ModelError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an EOS token to pad batches with")
    return pad


def _padded(rows: list[list[int]], width: int, fill: int) -> torch.Tensor:
    return torch.tensor([row + [fill] * (width - len(row)) for row in rows], dtype=torch.long)
