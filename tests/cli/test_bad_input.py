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


def test_unknown_model_fails_cleanly_in_a_fresh_process(tmp_path):
    storage = tmp_path / "store.db"
    result = run_cli("search", "--model", "no-such-model", "--task", "demo", "--trials", "1",
                     "--storage", str(storage), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model 'no-such-model'"), lines
    assert not storage.exists() or Store(str(storage)).jobs() == []


def test_unknown_job_and_trial(tmp_path):
    storage = str(tmp_path / "store.db")
    result = run_cli("pareto", "7", "--storage", storage, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: no job 7 in the store at sqlite:///")


def test_usage_errors_are_one_line(tmp_path):
    result = run_cli("search", "--model", "minilm", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: Missing option '--task'."]


# In-process: the same `autopeft` entry point (autopeft.cli.main), without a new interpreter per case;
# the three tests above keep one fresh interpreter each for what only a real process shows.
SEARCH = ["search", "--model", "minilm", "--trials", "1"]
SPACE_FILES = {
    "broken.yaml": "name: broken\nmodules:\n  lora: {roles: [q], rank: {choices: [four]}}\n",
    "roles.yaml": "name: roles\nmodules:\n  lora: {roles: [wq], rank: {choices: [4]}}\n",
    "schedule.yaml": "name: s\nmodules:\n  lora: {roles: [q], rank: {choices: [4]}}\nschedule: {active: [6]}\n",
    "methods.yaml": "name: m\nmodules:\n  methods: {roles: [q], choices: {qlora: {size: {choices: [4]}}}}\n",
    "setting.yaml": "name: m\nmodules:\n  methods: {roles: [q], choices: {loha: {size: {choices: [4]}, "
                    "settings: {alpha: {choices: [1, 8]}}}}}\n",
}


IN_PROCESS = {
    "missing task folder": ([*SEARCH, "--task", "./no/such/task"], "task folder not found"),
    "malformed yaml": ([*SEARCH, "--task", "demo", "--space", "{tmp}/broken.yaml"],
                       "{tmp}/broken.yaml: modules.lora.rank.choices.0: expected an integer size or 'hidden'"),
    "unknown role": ([*SEARCH, "--task", "demo", "--space", "{tmp}/roles.yaml"],
                     "{tmp}/roles.yaml: modules.lora.roles: unknown module 'wq'"),
    "zero trials": (["search", "--model", "minilm", "--task", "demo", "--trials", "0"],
                    "--trials must be at least 1, got 0"),
    "unreachable storage": ([*SEARCH, "--task", "demo", "--storage", "postgresql://127.0.0.1:5499/x"],
                            "cannot reach the store at postgresql+psycopg://127.0.0.1:5499/x"),
    "unknown optimizer": ([*SEARCH, "--task", "demo", "--optimizer", "grid"], "unknown optimizer 'grid'"),
    "missing columns": ([*SEARCH, "--task", "{tmp}/reviews.csv", "--text-columns", "body"], "{tmp}/reviews.csv"),
    "schedule wider than the model": ([*SEARCH, "--task", "demo", "--space", "{tmp}/schedule.yaml"],
                                      "{tmp}/schedule.yaml: schedule.active: 6 layers at a time leaves none out"),
    "unknown method": ([*SEARCH, "--task", "demo", "--space", "{tmp}/methods.yaml"],
                       "{tmp}/methods.yaml: modules.methods.choices: unknown method 'qlora'"),
    "unsearchable setting": ([*SEARCH, "--task", "demo", "--space", "{tmp}/setting.yaml"],
                             "{tmp}/setting.yaml: modules.methods.choices.loha.settings: 'alpha' is not searchable "
                             "for loha (searchable: none)"),
    "confirm seeds 0": ([*SEARCH, "--task", "demo", "--confirm-seeds", "0"], "--confirm-seeds must be at least 1, got 0"),
    "search split 0": ([*SEARCH, "--task", "demo", "--search-examples", "0"], "--search-examples must be at least 1, got 0"),
    "search split eats train": ([*SEARCH, "--task", "demo", "--search-examples", "600"],
                                "demo: --search-examples must be between 1 and 599 (the training split has 600"),
    "lr rescues 5": ([*SEARCH, "--task", "demo", "--lr-rescues", "5"], "--lr-rescues must be between 0 and 2, got 5"),
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
    (tmp_path / "reviews.csv").write_text("text,label\n" + "".join(f"example {i},{i % 2}\n" for i in range(30)))
    for name, text in SPACE_FILES.items():
        (tmp_path / name).write_text(text)
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
