"""An autopeft search driven by Ray Tune's Tuner, training the real MiniLM on the demo task."""

from __future__ import annotations

import json
import pickle

import pytest
import ray
from ray import tune

from autopeft.errors import AutopeftError
from autopeft.integrations.ray_tune import AutopeftSearcher
from autopeft.objectives import Objective
from autopeft.trials import TrialRequest
from autopeft.worker.pool import start_ray
from tests.scheduler.conftest import TINY

pytestmark = pytest.mark.slow


def test_tuner_runs_an_autopeft_search(prepared, tmp_path):
    spec = {"model": prepared.model, "task": prepared.task}

    def train(config):
        from autopeft.worker import ProxyTrainer, WorkerSpec

        trainer = ProxyTrainer(WorkerSpec(spec["model"], spec["task"], threads=1))
        outcome = trainer.run(TrialRequest(0, 0, config["structure"], seed=0, fidelity=TINY))
        tune.report({**outcome.metrics, "measured_params": outcome.trainable_params})

    objectives = [Objective("accuracy", "max"), Objective("trainable_params", "min")]
    searcher = AutopeftSearcher(prepared.space, objectives, optimizer="random", seed=1)
    start_ray(None, num_cpus=2)  # the session's Ray head (RAY_ADDRESS)
    try:
        tuner = tune.Tuner(
            tune.with_resources(train, {"cpu": 1}),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=3, max_concurrent_trials=2),
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    frame = results.get_dataframe()
    assert len(frame) == 3 and not results.errors
    assert (frame["measured_params"] == frame["config/trainable_params"]).all()
    assert frame["accuracy"].between(0, 1).all()
    assert len(searcher.optimizer.observations) == 3
    structures = [json.dumps(result.config["structure"], sort_keys=True) for result in results]
    assert len(set(structures)) == 3  # no duplicates


def test_searcher_state_survives_a_checkpoint(prepared, tmp_path):
    objectives = [Objective("accuracy", "max"), Objective("trainable_params", "min")]
    searcher = AutopeftSearcher(prepared.space, objectives, optimizer="random", seed=1)
    first = searcher.suggest("a")
    searcher.on_trial_complete("a", {"accuracy": 0.7})
    running = searcher.suggest("b")
    searcher.save(str(tmp_path / "searcher.json"))
    saved = json.loads((tmp_path / "searcher.json").read_text())  # plain JSON, not pickle
    assert saved["running"]["b"] == {k: running[k] for k in prepared.space.names}
    restored = AutopeftSearcher(prepared.space, objectives, optimizer="random", seed=1)
    restored.restore(str(tmp_path / "searcher.json"))
    assert restored.optimizer.observations == searcher.optimizer.observations  # values keep their types
    assert [o.values["accuracy"] for o in restored.optimizer.observations] == [0.7]
    assert set(restored._running) == {"b"}
    assert restored.optimizer.ask(1)[0] != {k: first[k] for k in prepared.space.names}


class _Payload:
    """Unpickling this writes a file: what a hostile checkpoint could do instead."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickled_checkpoint_is_refused_without_running_it(prepared, tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "searcher.pkl"
    path.write_bytes(pickle.dumps({"observations": [], "running": {}, "payload": _Payload(marker)}))
    searcher = AutopeftSearcher(prepared.space, [Objective("accuracy", "max")], optimizer="random")
    with pytest.raises(AutopeftError, match="not an autopeft searcher checkpoint"):
        searcher.restore(str(path))
    assert not marker.exists() and searcher.optimizer.observations == []
