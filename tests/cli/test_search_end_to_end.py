"""The installed ``autopeft`` command: a real search on 2 Ray workers, then pareto and export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from peft import PeftConfig, get_peft_model

from autopeft.models import TaskHead, load_base_model
from autopeft.tasks import TaskKind

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

FAST = ["--steps", "12", "--train-examples", "200", "--eval-examples", "100", "--batch-size", "8", "--max-length", "32"]


def autopeft(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "autopeft", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("search")
    storage = str(folder / "store.db")
    result = autopeft(
        "search", "--model", "minilm", "--task", str(shared_data / "glue" / "SST-2"), "--trials", "4",
        "--workers", "2", "--storage", storage, "--seed", "3", *FAST, cwd=folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, storage, result.stdout


def test_search_runs_every_trial_on_two_workers(finished_job):
    folder, storage, stdout = finished_job
    assert "Pareto set of job 1" in stdout and "job 1 completed: 4 trials" in stdout
    assert f"autopeft validate 1 --top 3 --storage {storage}" in stdout  # the next commands, ready to paste
    jobs = json.loads(autopeft("jobs", "--json", "--storage", storage, cwd=folder).stdout)
    assert [(j["id"], j["state"], j["trials_done"]) for j in jobs] == [(1, "completed", 4)]
    status = json.loads(autopeft("status", "1", "--json", "--storage", storage, cwd=folder).stdout)
    assert status["trial_counts"] == {"completed": 4}


def test_pareto_json_lists_non_dominated_really_trained_trials(finished_job):
    folder, storage, _ = finished_job
    front = json.loads(autopeft("pareto", "1", "--json", "--storage", storage, cwd=folder).stdout)
    assert front, "empty Pareto set"
    for entry in front:
        assert set(entry["values"]) == {"accuracy", "trainable_params"}
        assert entry["split"] == "search" and entry["n"] == len(entry["replicate_trials"]) >= 1
        assert isinstance(entry["trainable_params"], int) and isinstance(entry["trial"], int)
        assert entry["metrics"]["train_loss_first"] != entry["metrics"]["train_loss_last"]
    params = [e["trainable_params"] for e in front]
    accuracies = [e["values"]["accuracy"] for e in front]
    assert accuracies == sorted(accuracies, reverse=True)
    assert params == sorted(params, reverse=True)  # more accuracy costs more parameters on a front


def test_export_loads_in_peft_with_the_reported_count(finished_job, minilm_ref):
    folder, storage, _ = finished_job
    front = json.loads(autopeft("pareto", "1", "--json", "--storage", storage, cwd=folder).stdout)
    chosen = front[0]
    out = folder / "adapter"
    result = autopeft("export", "1", "--trial", str(chosen["trial"]), "--format", "peft", "--out", str(out),
                      "--storage", storage, cwd=folder)
    assert result.returncode == 0, result.stderr
    config = PeftConfig.from_pretrained(str(out))
    assert config.base_model_name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
    model = get_peft_model(load_base_model(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, 2)), config)
    assert model.get_nb_trainable_parameters()[0] == chosen["trainable_params"]


def test_validate_retrains_the_front_on_dev_and_reports_how_the_ranking_held(finished_job):
    folder, storage, stdout = finished_job
    assert "LoRA r8 q,v" in stdout  # the practitioner default ran and is marked in the table
    result = autopeft("validate", "1", "--top", "3", "--steps", "24", "--train-examples", "400", "--storage", storage,
                      cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validation: accuracy on dev" in result.stdout and "Spearman" in result.stdout
    status = json.loads(autopeft("status", "1", "--json", "--storage", storage, cwd=folder).stdout)
    validation = status["validation"]
    assert validation["split"] == "dev" and 1 <= len(validation["pairs"]) <= 3
    assert all(pair["fidelity"]["steps"] == 24 and pair["fidelity"]["eval_examples"] is None
               for pair in validation["pairs"])
    assert status["trial_counts"] == {"completed": 4}  # validation runs are not search trials
    front = json.loads(autopeft("pareto", "1", "--json", "--storage", storage, cwd=folder).stdout)
    assert {entry["split"] for entry in front} == {"search"}
