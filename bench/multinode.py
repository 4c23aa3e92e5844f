"""A real two-node Ray run on one machine: trials land on both nodes, and a node killed mid-search
loses no trial.

Starts a Ray head and a second node (``ray start --address``), one CPU each, each with its own
ports and ``--temp-dir``; creates a fresh PostgreSQL database; runs ``autopeft search
--ray-address`` with 2 workers of 1 CPU, so one worker lands on each node. Once ``--kill-after``
trials completed and one runs on the second node, the second node's raylet gets SIGKILL (the node
dies with its worker). ``--rejoin-after-s`` seconds later a third node joins, where the pool's
pending replacement worker lands (0: no third node). The verdict is read from the store: which node
ran each trial, whether a completed trial was lost or re-run, whether every trial ended completed
or failed with a reason. Writes docs/multinode.md and bench/results/multinode.csv, then drops the
database and stops every Ray process it started (by process group, never ``ray stop``).

    nice -n 15 python -m bench.multinode --trials 20
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psutil
import ray

from autopeft.objectives import structure_key
from autopeft.store import Store, TrialRecord, TrialRole
from autopeft.trials import TrialState
from bench.postgres import fresh_database

REPOSITORY = Path(__file__).resolve().parents[1]
FIDELITY = ["--steps", "6", "--train-examples", "96", "--eval-examples", "48", "--batch-size", "8",
            "--max-length", "32"]
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
WORKER_PORTS = 16
"""Ports each node's Ray worker processes may bind (free ones, so that nodes on one host never share)."""


@dataclass
class Node:
    """A ``ray start --block`` process (the leader of its own process group) and what it became."""

    label: str
    folder: Path
    process: subprocess.Popen
    started_s: float
    node_id: str = ""
    died_s: float | None = None


@dataclass
class Run:
    """What happened while the search ran; times are seconds since the search started."""

    nodes: list[Node] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    seen_completed: dict[int, tuple] = field(default_factory=dict)
    victims: list[int] = field(default_factory=list)
    seconds: float = 0.0
    exit_code: int | None = None


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def ray_start_command(folder: Path, head_port: int | None, address: str | None) -> list[str]:
    """``ray start --block`` for one node of 1 CPU on 127.0.0.1; a head when ``head_port`` is given."""
    ports = free_ports(9 + WORKER_PORTS)
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus", "1",
        "--node-ip-address", "127.0.0.1", "--temp-dir", str(folder), "--disable-usage-stats",
        "--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1]),
        "--dashboard-agent-listen-port", str(ports[2]), "--dashboard-agent-grpc-port", str(ports[3]),
        "--runtime-env-agent-port", str(ports[4]), "--metrics-export-port", str(ports[5]),
        "--worker-port-list", ",".join(map(str, ports[9:])),
    ]
    if head_port is not None:
        return command + ["--head", "--port", str(head_port), "--include-dashboard=false",
                          "--dashboard-port", str(ports[6]), "--ray-client-server-port", str(ports[7])]
    return command + ["--address", address]


def start_node(label: str, root: Path, t0: float, *, head_port: int | None = None, address: str | None = None) -> Node:
    """Start one node in its own process group and folder; returns at once (see :func:`await_node`)."""
    folder = root / label
    folder.mkdir()
    process = subprocess.Popen(
        ray_start_command(folder, head_port, address), env={**os.environ, **ENV}, start_new_session=True,
        stdout=(root / f"{label}.log").open("w"), stderr=subprocess.STDOUT,
    )
    return Node(label, folder, process, time.monotonic() - t0)


def connect(address: str, timeout_s: float = 120.0) -> None:
    """Connect this process to the head as a Ray driver, retrying while it starts."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            return
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def await_node(node: Node, timeout_s: float = 120.0) -> None:
    """Wait until the cluster lists ``node`` alive; records its Ray node id."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for info in ray.nodes():
            if info["Alive"] and info["RayletSocketName"].startswith(str(node.folder)):
                node.node_id = info["NodeID"]
                return
        if node.process.poll() is not None:
            raise RuntimeError(f"ray start for {node.label} exited {node.process.returncode}")
        time.sleep(0.5)
    raise TimeoutError(f"{node.label} did not join within {timeout_s:g} s")


def kill_raylet(node: Node) -> int:
    """SIGKILL ``node``'s raylet, found by its socket under the node's own temp dir; returns its pid."""
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "raylet" and any(str(node.folder) in part for part in process.info["cmdline"] or []):
            process.kill()
            return process.pid
    raise RuntimeError(f"no raylet of {node.label} found")


def stop_group(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM a process group this script started (``ray start --block`` stops its node on it), then
    SIGKILL what is left of the group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass


def node_of(worker: str | None, nodes: list[Node]) -> str:
    """The label of the node a worker name (``host:node:pid``) ran on."""
    if not worker or worker.count(":") < 2:
        return "?"
    prefix = worker.split(":")[-2]
    return next((node.label for node in nodes if node.node_id.startswith(prefix)), prefix)


def search_command(args, address: str, url: str) -> list[str]:
    return ["autopeft", "search", "--model", "minilm", "--task", "demo", "--trials", str(args.trials),
            "--workers", "2", "--optimizer", "random", "--seed", str(args.seed), "--ray-address", address,
            "--storage", url, *FIDELITY]


class Watch:
    """Polls the store and the cluster once a second while the search runs; kills the second node
    and starts the third one when their time comes, and notes what happened in ``run.timeline``."""

    def __init__(self, args, run: Run, store: Store, root: Path, address: str, t0: float) -> None:
        self.args, self.run, self.store, self.root, self.address, self.t0 = args, run, store, root, address, t0
        self.killed_at: float | None = None
        self.first_seen: set[str] = set()
        self.requeued: set[int] = set()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def until(self, driver: subprocess.Popen) -> None:
        """Watch until the driver exits (or ``--limit-s`` passes: then it is stopped)."""
        while driver.poll() is None and self.now() < self.args.limit_s:
            time.sleep(1.0)
            trials = self.store.trials(1) if self.store.jobs() else []
            self.note_trials(trials)
            self.maybe_kill(trials)
            self.maybe_rejoin()
        if driver.poll() is None:
            stop_group(driver, grace_s=10)
        self.run.exit_code, self.run.seconds = driver.returncode, self.now()

    def note_trials(self, trials: list[TrialRecord]) -> None:
        for trial in trials:
            if trial.state == TrialState.COMPLETED and trial.id not in self.run.seen_completed:
                self.run.seen_completed[trial.id] = (trial.values, trial.attempt, trial.worker)
            label = node_of(trial.worker, self.run.nodes) if trial.state == TrialState.RUNNING else None
            if label and label not in self.first_seen:
                self.first_seen.add(label)
                self.run.timeline.append((self.now(), f"first trial running on {label} (trial {trial.number})"))
            if trial.id in self.run.victims and trial.attempt > 1 and trial.id not in self.requeued:
                self.requeued.add(trial.id)
                self.run.timeline.append((self.now(), f"trial {trial.number} back in the queue (attempt {trial.attempt})"))
        second = self.run.nodes[1]
        if self.killed_at is not None and second.died_s is None and not _alive(second):
            second.died_s = self.now()
            self.run.timeline.append((self.now(), f"Ray lists {second.label} as dead"))

    def maybe_kill(self, trials: list[TrialRecord]) -> None:
        second = self.run.nodes[1]
        running = [t for t in trials if t.state == TrialState.RUNNING and node_of(t.worker, self.run.nodes) == second.label]
        if self.killed_at is None and len(self.run.seen_completed) >= self.args.kill_after and running:
            pid = kill_raylet(second)
            self.killed_at, self.run.victims = self.now(), [t.id for t in running]
            numbers = ", ".join(str(t.number) for t in running)
            self.run.timeline.append((self.now(), f"SIGKILL to the raylet of {second.label} (pid {pid}) while it ran trial {numbers}"))

    def maybe_rejoin(self) -> None:
        if self.killed_at is None or not self.args.rejoin_after_s or len(self.run.nodes) > 2:
            return
        if self.now() >= self.killed_at + self.args.rejoin_after_s:
            node = start_node("node3", self.root, self.t0, address=self.address)
            self.run.nodes.append(node)
            await_node(node)
            node.started_s = self.now()
            self.run.timeline.append((self.now(), "node3 joined the cluster (ray start --address)"))


def _alive(node: Node) -> bool:
    return any(info["NodeID"] == node.node_id and info["Alive"] for info in ray.nodes())


def _seconds(at: float) -> str:
    return "before the search" if at < 0 else f"{at:.0f}"


def verdict(run: Run, trials: list[TrialRecord]) -> dict:
    """The store's answer: trials lost or re-run, unfinished or failed without a reason, per node."""
    final = {t.id: t for t in trials}
    changed = [i for i, seen in run.seen_completed.items()
               if i not in final or final[i].state != TrialState.COMPLETED
               or (final[i].values, final[i].attempt, final[i].worker) != seen]
    searched = [t for t in trials if t.state == TrialState.COMPLETED and t.role != TrialRole.REPLICATE]
    per_node = Counter(node_of(t.worker, run.nodes) for t in trials if t.state == TrialState.COMPLETED)
    busy = Counter()
    for trial in trials:
        busy[node_of(trial.worker, run.nodes)] += trial.wall_time_s or 0.0
    return {
        "trials": len(trials),
        "completed": sum(t.state == TrialState.COMPLETED for t in trials),
        "failed": sum(t.state == TrialState.FAILED for t in trials),
        "unfinished": sum(t.state not in (TrialState.COMPLETED, TrialState.FAILED) for t in trials),
        "failed_without_reason": sum(t.state == TrialState.FAILED and not t.error for t in trials),
        "lost_or_rerun": len(changed),
        "structures_run_twice": sum(n - 1 for n in Counter(structure_key(t) for t in searched).values() if n > 1),
        "retried_attempts": sum(t.attempt - 1 for t in trials),
        "per_node": per_node,
        "busy_s": busy,
        "victims": [final[i] for i in run.victims if i in final],
    }


def write_csv(path: Path, trials: list[TrialRecord], nodes: list[Node]) -> None:
    columns = ["trial_id", "number", "role", "rung", "state", "attempt", "node", "worker", "started_at",
               "finished_at", "wall_time_s", "accuracy", "trainable_params", "error"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for t in trials:
            writer.writerow([t.id, t.number, t.role, t.rung, t.state, t.attempt, node_of(t.worker, nodes), t.worker,
                             t.started_at, t.finished_at, t.wall_time_s, t.values.get("accuracy"),
                             t.trainable_params, t.error or ""])


def report(args, run: Run, summary: dict, search: list[str], events: list[str], pool_lines: list[str]) -> str:
    """docs/multinode.md, generated."""
    shown = [part if not part.startswith("postgresql://") else "postgresql://postgres@127.0.0.1:5432/<fresh db>"
             for part in search]
    victims = "; ".join(f"trial {t.number}: {t.state}, attempt {t.attempt}, on {node_of(t.worker, run.nodes)}"
                        for t in summary["victims"]) or "none"
    lines = [
        "# A real multi-node Ray run: two nodes, one killed mid-search",
        "",
        "Generated by `bench/multinode.py`; do not edit.",
        "",
        f"Command: `nice -n 15 python -m bench.multinode {' '.join(sys.argv[1:])}`.  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU, Ray {ray.__version__}, PostgreSQL "
        f"127.0.0.1:5432; load average at the end {os.getloadavg()[0]:.1f}; date {date.today()}.  ",
        "Nodes: `ray start --head` and `ray start --address` on this machine, `--num-cpus 1` each, own ports and "
        f"`--temp-dir`; the search (driver exit code {run.exit_code}, {run.seconds:.0f} s):  ",
        f"`{shlex.join(shown)}`",
        "",
        "| node | Ray node id | listed alive at (s) | listed dead at (s) | trials completed there | trial-seconds there |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {n.label} | {n.node_id[:8]} | {_seconds(n.started_s)} | {'' if n.died_s is None else _seconds(n.died_s)} "
          f"| {summary['per_node'].get(n.label, 0)} | {summary['busy_s'].get(n.label, 0.0):.0f} |" for n in run.nodes],
        "",
        "| at (s, since the search started) | event |",
        "|---:|---|",
        *[f"| {at:.0f} | {what} |" for at, what in run.timeline],
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| trials stored (completed / failed / unfinished) | {summary['trials']} ({summary['completed']} / "
        f"{summary['failed']} / {summary['unfinished']}) | unfinished 0 |",
        f"| failed trials without a reason | {summary['failed_without_reason']} | 0 |",
        f"| completed trials lost or re-run (of {len(run.seen_completed)} seen completed during the run) | "
        f"{summary['lost_or_rerun']} | 0 |",
        f"| structures run twice (outside confirmation replicates) | {summary['structures_run_twice']} | 0 |",
        f"| retried attempts | {summary['retried_attempts']} | |",
        f"| the trials running on the killed node | {victims} | completed, attempt 2, on another node |",
        "",
        "Retry events in the store:",
        "",
        *[f"- {line}" for line in events or ["none"]],
        "",
        "The driver's pool log (stderr):",
        "",
        *[f"- {line}" for line in pool_lines or ["none"]],
    ]
    return "\n".join(lines) + "\n"


def run_bench(args, run: Run, root: Path, url: str) -> tuple[list[str], list[TrialRecord], list[str], list[str]]:
    """Start the two nodes, run the search on them while :class:`Watch` kills and rejoins, read the store.
    Returns the search command, the trials, the retry events and the driver's pool log lines."""
    t0 = time.monotonic()
    head_port = free_ports(1)[0]
    address = f"127.0.0.1:{head_port}"
    run.nodes.append(start_node("head", root, t0, head_port=head_port))
    connect(address)
    await_node(run.nodes[0])
    run.nodes.append(start_node("node2", root, t0, address=address))
    await_node(run.nodes[1])
    search = search_command(args, address, url)
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    driver_log = root / "driver.log"
    driver = subprocess.Popen(search, cwd=root, env={**env, **ENV}, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=driver_log.open("w"))
    store = Store(url)
    try:
        search_t0 = time.monotonic()
        for node in run.nodes:
            node.started_s -= search_t0 - t0
        run.timeline.append((0.0, "driver started (autopeft search)"))
        Watch(args, run, store, root, address, search_t0).until(driver)
        trials = store.trials(1) if store.jobs() else []
        events = [message for _, kind, message in (store.events(1) if store.jobs() else []) if kind == "trial_retried"]
    finally:
        store.close()
    pool_lines = [line.strip() for line in driver_log.read_text().splitlines()
                  if "worker" in line and any(word in line for word in ("died", "joined", "placed"))]
    return search, trials, events, pool_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--kill-after", type=int, default=4, help="completed trials before the second node dies")
    parser.add_argument("--rejoin-after-s", type=float, default=20.0, help="seconds after the kill a third node joins (0: never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-s", type=float, default=1500.0, help="the most seconds the search may run")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "multinode.md")
    parser.add_argument("--csv", type=Path, default=REPOSITORY / "bench" / "results" / "multinode.csv")
    args = parser.parse_args()
    if args.trials < args.kill_after + 2 or args.kill_after < 1:
        parser.error("--trials must leave at least 2 trials after --kill-after (>= 1)")
    run = Run()
    with fresh_database("autopeft_multinode") as url, tempfile.TemporaryDirectory(prefix="apm-") as folder:
        try:
            search, trials, events, pool_lines = run_bench(args, run, Path(folder), url)
        finally:
            ray.shutdown()
            for node in reversed(run.nodes):
                stop_group(node.process)
    summary = verdict(run, trials)
    write_csv(args.csv, trials, run.nodes)
    text = report(args, run, summary, search, events, pool_lines)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
