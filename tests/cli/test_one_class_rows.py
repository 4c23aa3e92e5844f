"""Pareto rows whose proxy predicted a single class are marked, on a real search's store: the
MRPC search that bench/quality.py ran (MiniLM, 12 real 150-step proxies, two seeds per front row)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from autopeft.cli.app import app

MRPC_SEARCH = Path(__file__).resolve().parents[2] / "bench" / "results" / "quality.search.db"
MRPC_JOB = "2"


def test_the_mrpc_search_marks_its_front_rows_with_a_one_class_run(tmp_path):
    store = tmp_path / "search.db"
    shutil.copy(MRPC_SEARCH, store)  # opening a store may migrate it: never the committed file
    storage = ["--storage", f"sqlite:///{store}"]
    table = CliRunner().invoke(app, ["pareto", MRPC_JOB, *storage], terminal_width=200)
    assert table.exit_code == 0, table.output
    marked = [line.split("│")[1].strip() for line in table.output.splitlines() if "one class lora" in line]
    assert marked == ["4", "8"]
    status = CliRunner().invoke(app, ["status", MRPC_JOB, *storage, "--json"])
    assert status.exit_code == 0, status.output
    warning = json.loads(status.output)["proxy_warning"]
    assert warning.startswith("2 of the 4 Pareto rows (trials 4, 8) had a run that predicted a single class")
