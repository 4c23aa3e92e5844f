"""Every subpackage imports on its own in a fresh interpreter, as a Ray worker or the CLI does.

Import cycles only show up for some entry orders; a fresh process per entry point finds them.
"""

import pkgutil
import subprocess
import sys

import pytest

import autopeft

ENTRY_POINTS = sorted(
    [info.name for info in pkgutil.iter_modules(autopeft.__path__, "autopeft.") if not info.name.startswith("autopeft._")]
    + ["autopeft.worker.actor", "autopeft.integrations.ray_tune", "autopeft.allocation.ist"]
)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_imports_alone(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
