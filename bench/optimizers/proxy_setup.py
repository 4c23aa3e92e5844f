"""The real proxy fine-tune shared by the lookup-table recording and the end-to-end run."""

from __future__ import annotations

from dataclasses import replace

from autopeft.models import build_skeleton, resolve_model
from autopeft.space.tuners import LORA_RATE
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import Fidelity, TrialOutcome, TrialRequest
from autopeft.worker.proxy import ProxyTrainer, WorkerSpec
from bench.data import GLUE, SST2
from bench.optimizers.grouped_spaces import GROUPED_SPACES, GroupedSpace

TASKS = {"sst2": str(SST2), "mrpc": str(GLUE / "MRPC")}
"""Tasks a lookup table can be recorded on; each scores accuracy on its search split."""
FIDELITY = Fidelity(
    train_examples=2400, steps=150, batch_size=16, max_length=64, learning_rate=1e-3, eval_examples=400
)
SHORT = replace(FIDELITY, train_examples=1280, steps=80)
TABLE_FIDELITY = {"lora": FIDELITY, "adapters": SHORT, "methods": replace(SHORT, learning_rate=LORA_RATE)}
"""The proxy each grouped space's lookup table was recorded at. The adapter and methods tables run
80 steps: at 150 the adapter table's largest rows took 100 s each on one thread (about 250 s
beside other work), too slow to record 160-180 rows in one session on 2 cores. The methods table
trains at LoRA's best rate for 80 steps (each method at its factor of it), as the methods table
of docs/methods_table.md measured: at 1e-3, 10 of its first 12 rows stayed at the majority class."""


def grouped_space(name: str = "lora") -> GroupedSpace:
    """The grouped benchmark space ``name`` (a key of GROUPED_SPACES) on MiniLM's meta skeleton."""
    return GROUPED_SPACES[name](build_skeleton(resolve_model("minilm"), load_task(str(SST2))))


def proxy_trainer(task: str = "sst2") -> ProxyTrainer:
    """MiniLM with a head for ``task`` (a key of :data:`TASKS`), on one CPU thread."""
    split = with_search_split(load_task(TASKS[task]))
    return ProxyTrainer(WorkerSpec(resolve_model("minilm"), split, threads=1), device="cpu")


def train(
    trainer: ProxyTrainer, space: GroupedSpace, point, number: int, seed: int, fidelity: Fidelity = FIDELITY
) -> TrialOutcome:
    """One real proxy fine-tune of ``point`` at ``fidelity``."""
    request = TrialRequest(
        trial_id=number, number=number, structure=space.decode(point).to_json(), seed=seed, fidelity=fidelity
    )
    return trainer.run(request)
