"""Static checks of the images and the compose file (no Docker engine runs on these machines)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (make install / .ci/run install it)")
    return path


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu-worker"])
def test_dockerfiles_pass_hadolint(dockerfile):
    result = subprocess.run([tool("hadolint"), str(DOCKER / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_is_valid():
    env = {**os.environ, "AUTOPEFT_TOKEN": "checked-statically"}
    result = subprocess.run([tool("docker-compose"), "-f", str(DOCKER / "compose.yaml"), "config", "-q"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_wires_store_ray_head_workers_and_api():
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    assert {"postgres", "ray-head", "worker", "gpu-worker", "api"} <= set(services)
    head_port = next(arg for arg in services["ray-head"]["command"] if arg.startswith("--port=")).split("=")[1]
    assert f"--address=ray-head:{head_port}" in services["worker"]["command"]
    assert f"--ray-address=ray-head:{head_port}" in services["api"]["command"]
    assert any(arg.startswith("--storage=postgresql://") for arg in services["api"]["command"])
    for service in services.values():
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
