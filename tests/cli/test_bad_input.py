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
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_search_input_fails_cleanly(case, tmp_path, malformed_space):
    role_space = tmp_path / "roles.yaml"
    role_space.write_text("name: roles\nmodules:\n  lora: {roles: [wq], rank: {choices: [4]}}\n")
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,label\n" + "".join(f"example {i},{i % 2}\n" for i in range(30)))
    args, expected = CASES[case]
    fill = {"space": malformed_space, "role_space": role_space, "csv": csv}
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
