"""``--format trl``: a valid script whose config is the peft export's, and which really trains."""

from __future__ import annotations

import ast
import json
import os
import runpy
import subprocess
import sys

import pytest
from peft import PeftConfig, PeftModel

from autopeft.errors import ExportError
from autopeft.export import export_trial
from autopeft.models import TaskHead, load_base_model, resolve_model
from autopeft.space.structure import Structure, TunerModules
from autopeft.tasks import TaskKind, load_task
from tests.export.conftest import grid, lora

pytestmark = pytest.mark.slow


def export_both(job, structure, tmp_path):
    """The trial's TRL script and its peft export."""
    trial = job.trial(structure)
    (script,) = export_trial(*job.records(trial), "trl", tmp_path / "trl")
    export_trial(*job.records(trial), "peft", tmp_path / "peft")
    return trial, script


def run_script(script, *args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize(
    "structure",
    [lora({(layer, "q"): 2 ** layer for layer in range(6)}, variant="dora"),
     Structure(ia3=frozenset(grid(range(6), ("v", "down")))),
     Structure(tuner=TunerModules("delora", 4, frozenset(grid((4, 5), ("q", "v"))), {"delora_lambda": 1.0}))],
    ids=["lora-per-layer-ranks", "ia3", "delora-searched-bound"],
)
def test_classification_script_builds_the_peft_export(mrpc_job, tmp_path, structure):
    _, script = export_both(mrpc_job, structure, tmp_path)
    ast.parse(script.read_text())
    namespace = runpy.run_path(str(script), run_name="exported")  # imports only: main() does not run
    assert namespace["build_peft_config"]() == PeftConfig.from_pretrained(str(tmp_path / "peft"))


def test_causal_lm_script_builds_the_peft_export_for_sft_trainer(smollm_job, tmp_path):
    ranks = {**dict.fromkeys(grid(range(4), ("q", "v")), 8), (29, "down"): 16}
    _, script = export_both(smollm_job, lora(ranks), tmp_path)
    source = script.read_text()
    tree = ast.parse(source)
    assert "SFTTrainer" in source and "peft_config=build_peft_config()" in source
    # Run only the constants and the config function, so this holds without TRL installed.
    kept = [node for node in tree.body if isinstance(node, (ast.ImportFrom, ast.Import, ast.Assign))
            or (isinstance(node, ast.FunctionDef) and node.name == "build_peft_config")]
    namespace = {}
    exec(compile(ast.Module(kept, type_ignores=[]), str(script), "exec"), namespace)
    config = namespace["build_peft_config"]()
    assert config == PeftConfig.from_pretrained(str(tmp_path / "peft"))
    assert config.task_type == "CAUSAL_LM" and config.rank_pattern[r"^model\.layers\.29\.mlp\.down_proj"] == 16


def test_trl_refuses_what_peft_cannot_hold(mrpc_job, tmp_path):
    trial = mrpc_job.trial(Structure(parallel_adapter={0: 16}))
    with pytest.raises(ExportError, match="cannot hold parallel bottleneck adapters .* --format autopeft"):
        export_trial(*mrpc_job.records(trial), "trl", tmp_path / "out")
    adalora = mrpc_job.trial(Structure(tuner=TunerModules("adalora", 4, frozenset(grid((4, 5), ("q", "v"))))))
    with pytest.raises(ExportError, match="adalora, which must update its ranks after every optimizer step"):
        export_trial(*mrpc_job.records(adalora), "trl", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_classification_script_trains_offline_and_saves_a_loadable_adapter(mrpc_job, shared_data, minilm_ref,
                                                                              tmp_path):
    trial, script = export_both(mrpc_job, lora(grid(range(6), "qv")), tmp_path)
    task = load_task(str(shared_data / "glue" / "MRPC"))
    rows = [{"sentence1": a, "sentence2": b, "label": int(label)}
            for (a, b), label in zip(task.train.texts[:16], task.train.labels[:16])]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    result = run_script(script, "--train-file", str(train), "--dev-file", str(train), "--model", minilm_ref.path,
                        "--text-columns", "sentence1,sentence2", "--max-steps", "2", "--batch-size", "4",
                        "--max-length", "32", "--output-dir", str(tmp_path / "adapter"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval_accuracy" in result.stdout
    base = load_base_model(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, 2))
    model = PeftModel.from_pretrained(base, str(tmp_path / "adapter"), is_trainable=True)
    assert model.get_nb_trainable_parameters()[0] == trial.trainable_params


def test_causal_lm_script_trains_with_sft_trainer(smollm_job, shared_data, tmp_path):
    pytest.importorskip("trl")
    trial, script = export_both(smollm_job, lora(grid(range(28, 30), ("q", "v")), rank=4), tmp_path)
    records = json.loads((shared_data / "instruct" / "alpaca_en_demo.json").read_text())[:4]
    train = write_jsonl(tmp_path / "train.jsonl", records)
    result = run_script(script, "--train-file", str(train), "--model", resolve_model("smollm2").path,
                        "--max-steps", "2", "--batch-size", "2", "--max-length", "48",
                        "--output-dir", str(tmp_path / "adapter"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = PeftConfig.from_pretrained(str(tmp_path / "adapter"))
    assert saved.target_modules == PeftConfig.from_pretrained(str(tmp_path / "peft")).target_modules
