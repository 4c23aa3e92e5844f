"""Shared fixtures: real data beside the checkout, the MiniLM model, tiny random models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.network import free_port

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread in this process and every process it starts (CLI runs, scripts): on 2 cores,
# two threads run a MiniLM forward 1.5x faster on a quiet machine but 7-10x slower when one other
# busy process shares the cores (80 ms vs 560-790 ms), and CI machines are shared.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data missing: {SHARED_DATA} (the checkout needs ../shared beside it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sst2(shared_data):
    from autopeft.tasks import load_task

    return load_task(str(shared_data / "glue" / "SST-2"))


@pytest.fixture(scope="session")
def minilm_ref():
    from autopeft.models import resolve_model

    return resolve_model("minilm")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local Ray head for every test that schedules trials, started once per session.

    ``RAY_ADDRESS`` points this process and every CLI or service subprocess at it, so no test
    pays for a Ray start of its own (autopeft's ``start_ray`` honours ``RAY_ADDRESS`` as Ray does).
    Token auth is off: the head listens on the loopback of a test machine only. Yields the
    address ("127.0.0.1:PORT").
    """
    import ray

    port = free_port()
    address = f"127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    os.environ["RAY_AUTH_MODE"] = "disabled"
    folder = tmp_path_factory.mktemp("ray")
    log = folder / "head.log"
    # --block keeps the head in this child: terminating it stops every process the head started.
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "8", "--include-dashboard=false", "--disable-usage-stats", "--block",
         "--temp-dir", str(folder), *_own_fixed_ports()],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_stop_with_parent,
    )
    try:
        _wait_until_up(head, address, log)
        os.environ["RAY_ADDRESS"] = address
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _own_fixed_ports() -> list[str]:
    """Free ports for the head's services that Ray otherwise binds at fixed numbers (client server
    10001, dashboard agent 52365), so that two test processes (pytest-xdist workers) each run a head."""
    return ["--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())]


def _stop_with_parent() -> None:
    """SIGTERM the head when pytest dies without its teardown (a timeout's kill, a crash).

    The head runs in its own session, so nothing else would stop it, and a leftover head keeps
    its workers busy. Linux's prctl(PR_SET_PDEATHSIG) through libc: the standard library has no call for it.
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_until_up(head: subprocess.Popen, address: str, log: Path, timeout_s: float = 120.0) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start --head exited {head.returncode}: {log.read_text()[-2000:]}")
        try:
            ray.init(address=address, log_to_driver=False)
            return
        except ConnectionError:
            time.sleep(1.0)
    pytest.fail(f"no Ray head at {address} after {timeout_s:.0f} s")
