"""Jobs in a real SQLite store whose trials carry chosen structures, without running a search.

Each trial is recorded as completed with the exact trainable count of its structure (as a worker
would report it), so exports can be validated on the real base models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from autopeft.models import TaskHead
from autopeft.scheduler import JobSpec, PreparedJob, prepare
from autopeft.scheduler.sensitivities import provide_sensitivities
from autopeft.space import count_trainable
from autopeft.space.structure import LoraModules, Structure
from autopeft.store import JobState, Store
from autopeft.tasks import TaskKind
from autopeft.trials import Fidelity, TrialOutcome, TrialState


class JobBuilder:
    """A stored job for ``model`` on ``task``; :meth:`trial` adds a completed trial."""

    def __init__(self, store: Store, model: str, task: str, space: str = "lora") -> None:
        self.store = store
        self.prepared = prepare(JobSpec(model=model, task=task, space=space))
        self.job_id = store.create_job(self.prepared.stored_spec(), budget_trials=8)
        store.set_job_state(self.job_id, JobState.RUNNING)

    @property
    def layout(self):
        return self.prepared.space.layout

    def trial(self, structure: Structure, *, state=TrialState.COMPLETED, trainable_params: int | None = None,
              metrics: dict[str, float] | None = None):
        params = count_trainable(structure, self.layout) if trainable_params is None else trainable_params
        record = self.store.add_trial(
            self.job_id, config={}, structure=structure.to_json(), trainable_params=params, seed=0,
            fidelity=Fidelity().to_json(),
        )
        if state == TrialState.COMPLETED:
            record = self.store.record_outcome(
                TrialOutcome(record.id, state, "test", metrics=metrics or {"accuracy": 0.7}, trainable_params=params)
            )
        elif state == TrialState.FAILED:
            record = self.store.record_outcome(TrialOutcome(record.id, state, "test", error="non-finite loss"))
        return record

    def records(self, trial):
        return self.store.job(self.job_id), self.store.trial(self.job_id, trial.number)


@pytest.fixture(scope="session")
def export_store(tmp_path_factory):
    return Store(f"sqlite:///{tmp_path_factory.mktemp('exports') / 'store.db'}")


@pytest.fixture(scope="module")
def measuring_store(tmp_path_factory):
    """A store of the test module's own, for jobs whose measurements the module checks are made once:
    in the session's shared store, another module's job may already have cached the same one."""
    return Store(f"sqlite:///{tmp_path_factory.mktemp('measurements') / 'store.db'}")


@pytest.fixture(scope="session")
def mrpc_job(export_store, shared_data):
    """MiniLM on MRPC (classification, BERT layout, 6 layers)."""
    return JobBuilder(export_store, "minilm", str(shared_data / "glue" / "MRPC"))


@pytest.fixture(scope="session")
def smollm_job(export_store, shared_data):
    """SmolLM2-135M on the Alpaca demo (causal LM, LLaMA layout, 30 layers)."""
    return JobBuilder(export_store, "smollm2", str(shared_data / "instruct" / "alpaca_en_demo.json"), space="decoder")


def lora(places, rank=8, variant="lora", **kwargs) -> Structure:
    """LoRA at ``places``: a dict place -> rank, or an iterable of places at ``rank``."""
    ranks = dict(places) if isinstance(places, dict) else dict.fromkeys(places, rank)
    return Structure(lora=LoraModules(ranks, variant=variant, **kwargs))


def grid(layers, roles):
    return [(layer, role) for layer in layers for role in roles]


def measured_job(store: Store, space_yaml: str, task: str, structure: Structure | Callable[[PreparedJob], Structure],
                 folder: Path):
    """A stored MiniLM job over the space ``space_yaml`` (written into ``folder``) whose measurements
    (SPT/IST scores, EVA's vectors, entry rankings) were provided twice, measured then read from the
    cache, and one completed trial of ``structure`` (or of the structure it returns for the
    measured job, for structures decoded from the measurements).

    Returns (prepared, prepared again, the measurements announced, job record, trial record).
    """
    space = folder / "space.yaml"
    space.write_text(space_yaml)
    spec = JobSpec(model="minilm", task=task, space=str(space), fidelity=Fidelity(train_examples=256, max_length=48))
    measured: list[str] = []
    prepared = provide_sensitivities(prepare(spec), store, measured.append)
    again = provide_sensitivities(prepare(spec), store, measured.append)
    job_id = store.create_job(prepared.stored_spec(), budget_trials=4)
    store.set_job_state(job_id, JobState.RUNNING)
    structure = structure(prepared) if callable(structure) else structure
    params = count_trainable(structure, prepared.space.layout)
    record = store.add_trial(job_id, config={}, structure=structure.to_json(), trainable_params=params,
                             seed=0, fidelity=spec.fidelity.to_json())
    store.record_outcome(TrialOutcome(record.id, TrialState.COMPLETED, "test", metrics={"accuracy": 0.8},
                                      trainable_params=params))
    return prepared, again, measured, store.job(job_id), store.trial(job_id, record.number)


def classification_head() -> TaskHead:
    return TaskHead(TaskKind.CLASSIFICATION, 2)
