"""Worker placement on a cluster without room: the pool reports it within its timeout, never hangs.

The session's Ray head (``ray_cluster``) is shared, so each test sizes its workers from the CPUs
the cluster has, and fills a CPU with a placement group (a bare reservation) where it must.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group

from autopeft.space.structure import LoraModules, Structure
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker.pool import WorkerPool, WorkerPoolError
from autopeft.worker.proxy import WorkerSpec

pytestmark = pytest.mark.slow

TINY = Fidelity(train_examples=16, steps=2, batch_size=8, max_length=16, eval_examples=16)
REQUEST = TrialRequest(1, 0, Structure(lora=LoraModules({(0, "q"): 2})).to_json(), seed=0, fidelity=TINY)


@pytest.fixture(autouse=True)
def connected(ray_cluster):
    """These tests ask Ray for its resources before any pool connects: this process must be
    connected to the session's head, even after an earlier test in it shut its connection down."""
    if not ray.is_initialized():
        ray.init(address=ray_cluster, log_to_driver=False)


@pytest.fixture
def spec(minilm_ref) -> WorkerSpec:
    return WorkerSpec(minilm_ref, with_search_split(load_task("demo")), threads=1)  # not one per reserved CPU


def cluster_cpus() -> int:
    return int(ray.cluster_resources()["CPU"])


def kill_worker_and_fill_a_cpu(pool: WorkerPool):
    """SIGKILL the pool's only worker, then reserve one of the CPUs it freed: its replacement, which
    needs every CPU, cannot be placed while the reservation stands. Returns the placement group."""
    os.kill(pool.worker_pids()[0], signal.SIGKILL)
    group = placement_group([{"CPU": 1}])
    ray.get(group.ready(), timeout=120)
    return group


def test_a_pool_ray_cannot_place_fails_with_what_the_cluster_lacks_within_its_timeout(spec):
    started = time.monotonic()
    with pytest.raises(WorkerPoolError, match=rf"placed no worker within 2 s: each needs {cluster_cpus() + 1} CPU"):
        WorkerPool(spec, size=1, cpus_per_worker=cluster_cpus() + 1, placement_timeout_s=2.0)
    assert time.monotonic() - started < 15


def test_a_dead_last_worker_is_replaced_once_room_appears_and_ends_the_pool_when_none_does(spec):
    pool = WorkerPool(spec, size=1, cpus_per_worker=cluster_cpus())
    groups = []
    try:
        lost_name = pool.slots[0].name
        groups.append(kill_worker_and_fill_a_cpu(pool))
        threading.Timer(3.0, remove_placement_group, args=(groups.pop(),)).start()
        pool.submit(pool.slots[0], REQUEST)
        [(_, lost)] = pool.wait(timeout_s=60)  # blocks until the replacement is placed and loaded
        assert lost.lost_worker and lost.worker == lost_name
        [slot] = pool.slots  # its name comes from start(): the model is loaded
        assert slot.name != lost_name and slot.name.count(":") == 2  # host:node:pid

        groups.append(kill_worker_and_fill_a_cpu(pool))  # this time the room never comes back
        pool.placement_timeout_s = 2.0
        pool.submit(slot, REQUEST)
        started = time.monotonic()
        with pytest.raises(WorkerPoolError, match="placed no worker within 2 s"):
            pool.wait(timeout_s=60)
        assert time.monotonic() - started < 30
    finally:
        pool.shutdown()
        for group in groups:
            remove_placement_group(group)
