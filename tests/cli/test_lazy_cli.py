"""The CLI loads only what a verb uses: `--help` and `jobs` never wait for the search stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "botorch", "optuna", "fastapi", "transformers", "peft", "sklearn")
LOADED_AFTER = """
import json, sys
from autopeft.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(name for name in {heavy} if name in sys.modules)), file=sys.stderr)
"""


def heavy_modules_after(args, cwd) -> list[str]:
    """The heavy packages loaded once ``autopeft ARGS`` ran in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    result = subprocess.run([sys.executable, "-c", LOADED_AFTER.format(heavy=HEAVY), *args], capture_output=True,
                            text=True, timeout=120, cwd=cwd, env=env)
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["search", "--help"], ["jobs", "--json", "--storage", "s.db"]])
def test_help_and_jobs_load_no_search_stack(args, tmp_path):
    assert heavy_modules_after(args, tmp_path) == []


@pytest.mark.parametrize("verb", ["status", "pareto"])
def test_status_and_pareto_of_a_finished_job_load_no_search_stack(verb, tmp_path):
    from bench.cli_startup import seeded_store

    url = seeded_store(tmp_path / "store.db")
    assert heavy_modules_after([verb, "1", "--json", "--storage", url], tmp_path) == []


def test_the_optimizer_names_a_job_may_give_are_the_implemented_ones():
    from autopeft.optimizers import OPTIMIZERS
    from autopeft.scheduler.job_spec import OPTIMIZER_NAMES

    assert set(OPTIMIZER_NAMES) == set(OPTIMIZERS)
