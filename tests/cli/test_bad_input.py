"""Bad input: one clear error line, a non-zero exit, and no job left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autopeft.store import Store


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "autopeft", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def malformed_space(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nmodules:\n  lora: {roles: [q], rank: {choices: [four]}}\n")
    return path


CASES = {
    "unknown model": (["--model", "no-such-model", "--task", "demo"], "error: unknown model 'no-such-model'"),
    "missing task folder": (["--model", "minilm", "--task", "./no/such/task"], "error: task folder not found"),
    "malformed yaml": (["--model", "minilm", "--task", "demo", "--space", "{space}"],
                       "error: {space}: modules.lora.rank.choices.0: expected an integer size or 'hidden'"),
    "unknown role": (["--model", "minilm", "--task", "demo", "--space", "{role_space}"],
                     "error: {role_space}: modules.lora.roles: unknown module 'wq'"),
    "zero trials": (["--model", "minilm", "--task", "demo", "--trials", "0"], "error: --trials must be at least 1, got 0"),
    "unreachable storage": (["--model", "minilm", "--task", "demo", "--storage", "postgresql://127.0.0.1:5499/x"],
                            "error: cannot reach the store at postgresql+psycopg://127.0.0.1:5499/x"),
    "unknown optimizer": (["--model", "minilm", "--task", "demo", "--optimizer", "grid"], "error: unknown optimizer 'grid'"),
    "missing columns": (["--model", "minilm", "--task", "{csv}", "--text-columns", "body"], "error: {csv}"),
    "schedule wider than the model": (["--model", "minilm", "--task", "demo", "--space", "{schedule_space}"],
                                      "error: {schedule_space}: schedule.active: 6 layers at a time leaves none out"),
    "unknown method": (["--model", "minilm", "--task", "demo", "--space", "{method_space}"],
                       "error: {method_space}: modules.methods.choices: unknown method 'qlora'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_search_input_fails_cleanly(case, tmp_path, malformed_space):
    role_space = tmp_path / "roles.yaml"
    role_space.write_text("name: roles\nmodules:\n  lora: {roles: [wq], rank: {choices: [4]}}\n")
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,label\n" + "".join(f"example {i},{i % 2}\n" for i in range(30)))
    args, expected = CASES[case]
    schedule_space = tmp_path / "schedule.yaml"
    schedule_space.write_text("name: s\nmodules:\n  lora: {roles: [q], rank: {choices: [4]}}\nschedule: {active: [6]}\n")
    method_space = tmp_path / "methods.yaml"
    method_space.write_text("name: m\nmodules:\n  methods: {roles: [q], choices: {qlora: {size: {choices: [4]}}}}\n")
    fill = {"space": malformed_space, "role_space": role_space, "csv": csv, "schedule_space": schedule_space,
            "method_space": method_space}
    args = [a.format(**fill) for a in args]
    storage = tmp_path / "store.db"
    if "--storage" not in args:
        args += ["--storage", str(storage)]
    if "--trials" not in args:
        args += ["--trials", "1"]
    result = run_cli("search", *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected.format(**fill)), lines[0]
    assert not storage.exists() or Store(str(storage)).jobs() == []


def test_unknown_job_and_trial(tmp_path):
    storage = str(tmp_path / "store.db")
    result = run_cli("pareto", "7", "--storage", storage, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: no job 7 in the store at sqlite:///")


def test_usage_errors_are_one_line(tmp_path):
    result = run_cli("search", "--model", "minilm", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: Missing option '--task'."]


# In-process: the same `autopeft` entry point (autopeft.cli.main), without a new interpreter per case.
SEARCH = ["search", "--model", "minilm", "--trials", "1"]
IN_PROCESS = {
    "confirm seeds 0": ([*SEARCH, "--task", "demo", "--confirm-seeds", "0"], "--confirm-seeds must be at least 1, got 0"),
    "search split 0": ([*SEARCH, "--task", "demo", "--search-examples", "0"], "--search-examples must be at least 1, got 0"),
    "search split eats train": ([*SEARCH, "--task", "demo", "--search-examples", "600"],
                                "demo: --search-examples must be between 1 and 599 (the training split has 600"),
    "lr rescues 5": ([*SEARCH, "--task", "demo", "--lr-rescues", "5"], "--lr-rescues must be 0, 1 or 2, got 5"),
    "steps 0": ([*SEARCH, "--task", "demo", "--steps", "0"], "--steps must be at least 1, got 0"),
    "eval examples 0": ([*SEARCH, "--task", "demo", "--eval-examples", "0"], "--eval-examples must be at least 1, got 0"),
    "negative rate": ([*SEARCH, "--task", "demo", "--learning-rate", "-1"], "--learning-rate must be positive, got -1.0"),
    "fraction 2": ([*SEARCH, "--task", "demo", "--max-trainable-fraction", "2"],
                   "--max-trainable-fraction must be in (0, 1], got 2.0"),
    "workers 0": ([*SEARCH, "--task", "demo", "--workers", "0"], "--workers must be at least 1, got 0"),
    "eta 1": ([*SEARCH, "--task", "demo", "--eta", "1"], "--eta must be greater than 1, got 1.0"),
    "unknown extra objective": ([*SEARCH, "--task", "demo", "--also-minimize", "bogus"],
                                "--also-minimize takes peak_memory_bytes or step_time_s, got 'bogus'"),
    "metric of another kind": ([*SEARCH, "--task", "demo", "--metric", "bleu"],
                               "demo: metric 'bleu' does not apply to a classification task"),
    "missing space file": ([*SEARCH, "--task", "demo", "--space", "{tmp}/nothere.yaml"],
                           "space file not found: {tmp}/nothere.yaml (shipped spaces:"),
    "empty task file": ([*SEARCH, "--task", "{tmp}/empty.csv"], "{tmp}/empty.csv: empty file"),
    "header-only task file": ([*SEARCH, "--task", "{tmp}/header.csv"], "{tmp}/header.csv: no examples, only a header"),
    "one-row task file": ([*SEARCH, "--task", "{tmp}/one.csv"], "{tmp}/one.csv: 1 rows are too few to hold out 10%"),
    "binary task file": ([*SEARCH, "--task", "{tmp}/binary.csv"], "{tmp}/binary.csv: line 1 is not UTF-8 text"),
    "wrong label column": ([*SEARCH, "--task", "{tmp}/one.csv", "--label-column", "stars"],
                           "{tmp}/one.csv: no column 'stars' (columns: text, label)"),
    "storage URL of no database": (["jobs", "--storage", "nope+what://x/y"], "cannot use storage URL nope+what://x/y"),
    "export of no job": (["export", "7", "--trial", "0", "--out", "{tmp}/out"], "no job 7 in the store at sqlite:///"),
    "validate of no job": (["validate", "7"], "no job 7 in the store at sqlite:///"),
    "train of nothing": (["train", "--out", "{tmp}/run"], "give either JOB --trial N or --config FILE"),
}


@pytest.mark.parametrize("case", sorted(IN_PROCESS))
def test_bad_options_and_files_fail_in_one_line_and_store_nothing(case, tmp_path, capsys):
    from autopeft.cli import main

    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("text,label\n")
    (tmp_path / "one.csv").write_text("text,label\nonly row,1\n")
    (tmp_path / "binary.csv").write_bytes(bytes(range(128, 256)) * 3)
    args, expected = IN_PROCESS[case]
    storage = tmp_path / "store.db"
    args = [a.format(tmp=tmp_path) for a in args]
    if "--storage" not in args:
        args += ["--storage", str(storage)]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + expected.format(tmp=tmp_path)), lines
    assert not storage.exists() or Store(str(storage)).jobs() == []
