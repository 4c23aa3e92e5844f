"""Every subpackage imports on its own, as a Ray worker or the CLI does.

Import cycles only show up for some entry orders, so each entry point is imported in a process
where no ``autopeft`` module is loaded yet. To keep that affordable, one interpreter imports the
third-party stack once and forks a child per entry point: the children share torch, transformers
and the rest, which cannot hide a cycle among autopeft's own modules.
"""

import json
import pkgutil
import subprocess
import sys

import pytest

import autopeft

ENTRY_POINTS = sorted(
    [info.name for info in pkgutil.iter_modules(autopeft.__path__, "autopeft.") if not info.name.startswith("autopeft._")]
    + ["autopeft.worker.actor", "autopeft.integrations.ray_tune", "autopeft.allocation.ist"]
)

THIRD_PARTY = ("torch", "transformers", "peft", "botorch", "optuna", "ray", "sqlalchemy", "fastapi", "typer", "rich")

FORK_PER_MODULE = """
import importlib, json, os, sys, traceback
for name in sys.argv[1].split(","):
    importlib.import_module(name)
if any(name == "autopeft" or name.startswith("autopeft.") for name in sys.modules):
    sys.exit("autopeft was imported before the fork")
results = {}
for module in sys.argv[2:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
            os._exit(0)
        except BaseException:
            os.write(write, traceback.format_exc()[-1500:].encode())
            os._exit(1)
    os.close(write)
    with os.fdopen(read) as pipe:
        error = pipe.read()
    _, status = os.waitpid(pid, 0)
    results[module] = error or ("" if status == 0 else f"exit status {status}")
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def import_errors() -> dict[str, str]:
    """Entry point -> traceback of its import in a fresh child ('' when it imported)."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_PER_MODULE, ",".join(THIRD_PARTY), *ENTRY_POINTS],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-1500:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_imports_alone(module, import_errors):
    assert import_errors[module] == "", import_errors[module]


def test_a_cycle_is_reported(tmp_path):
    """The forked import really fails on a cycle (guards the harness itself)."""
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic.b import B\nA = 1\n")
    (package / "b.py").write_text("from cyclic.a import A\nB = 2\n")
    result = subprocess.run(
        [sys.executable, "-c", FORK_PER_MODULE, "json", "cyclic.a"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ImportError" in json.loads(result.stdout)["cyclic.a"]
