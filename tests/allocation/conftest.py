"""Fixtures for the allocation tests: tiny models with random token data, and a CPU budget."""

from __future__ import annotations

import pytest
import torch

from autopeft.tasks import TaskKind, TokenizedSplit
from tests.space.tiny_models import TINY_MODELS


@pytest.fixture(autouse=True, scope="session")
def two_threads():
    """The test machine's two cores are shared: never take more."""
    torch.set_num_threads(min(2, torch.get_num_threads()))


def state(model) -> dict[str, torch.Tensor]:
    """A copy of every tensor in ``model``'s state dict (to check a measurement leaves it unchanged)."""
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def random_tokens(model, examples: int = 24, seed: int = 0) -> TokenizedSplit:
    """Random token sequences (lengths 5..12) the tiny ``model`` can learn from.

    Classifiers get class labels; language models (and T5, which takes the tokens as targets)
    get the tokens themselves.
    """
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 13, (examples,), generator=generator).tolist()
    input_ids = [torch.randint(1, 99, (n,), generator=generator).tolist() for n in lengths]
    if model.config.model_type in ("bert", "distilbert"):
        labels = torch.randint(0, model.config.num_labels, (examples,), generator=generator).tolist()
        return TokenizedSplit(input_ids, None, labels, TaskKind.CLASSIFICATION, pad_token_id=0)
    return TokenizedSplit(input_ids, None, [list(ids) for ids in input_ids], TaskKind.CAUSAL_LM, pad_token_id=0)


@pytest.fixture(params=sorted(TINY_MODELS))
def tiny_model(request):
    torch.manual_seed(0)
    return TINY_MODELS[request.param]()
