"""Static checks of the images and the compose file (no Docker engine runs on these machines)."""

from __future__ import annotations

import re
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
    result = subprocess.run([tool("docker-compose"), "-f", str(DOCKER / "compose.yaml"), "config", "-q"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _mounts(service: dict, secret: str) -> bool:
    return secret in service.get("secrets", [])


def test_compose_takes_passwords_and_tokens_from_secret_files_only():
    text, compose = (DOCKER / "compose.yaml").read_text(), _compose()
    services = compose["services"]
    assert not re.search(r"postgres(ql)?://[^/@\s]*:[^/@\s]*@", text), "a password in a storage URL"
    assert not re.search(r"^\s*(POSTGRES_PASSWORD|PGPASSWORD|AUTOPEFT_TOKEN|RAY_AUTH_TOKEN)\s*:", text, re.M)
    assert {name: secret["file"] for name, secret in compose["secrets"].items()} == {
        name: f"./secrets/{name}" for name in ("postgres_password", "autopeft_token", "ray_auth_token")
    }
    assert "secrets/" in (DOCKER / ".gitignore").read_text().split()
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert _mounts(postgres, "postgres_password")
    api = services["api"]
    assert api["environment"]["AUTOPEFT_TOKEN_FILE"] == "/run/secrets/autopeft_token" and _mounts(api, "autopeft_token")
    for name in ("api", "worker", "gpu-worker"):  # they open the store (Ray actors write trials)
        service = services[name]
        assert "/run/secrets/postgres_password" in " ".join(service["entrypoint"]) and _mounts(service, "postgres_password")
        assert not any("PGPASSWORD" in arg or "password" in arg for arg in service["command"])


def test_compose_keeps_ray_token_auth_on_everywhere():
    services = _compose()["services"]
    for name in ("ray-head", "worker", "gpu-worker", "api"):
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token" and _mounts(services[name], "ray_auth_token")


def test_compose_publishes_the_api_on_localhost_for_a_tls_proxy():
    assert _compose()["services"]["api"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "TLS" in (DOCKER / "README.md").read_text()


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
