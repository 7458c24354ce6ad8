"""A real local Ray cluster of two nodes for tests: `ray start --head` and `ray start --address`, each with
its own ports and temp dir, in the foreground (`--block`) so every process is ours, and stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE = str(80 * 1024 * 1024)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_ports() -> list[str]:
    """Ports a node would otherwise take from fixed defaults (two nodes on one machine would collide)."""
    return [
        "--node-manager-port",
        str(free_port()),
        "--object-manager-port",
        str(free_port()),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--dashboard-agent-grpc-port",
        str(free_port()),
        "--runtime-env-agent-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
    ]


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc), so a node's raylet and workers can be killed by pid."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Node:
    process: subprocess.Popen
    log: Path
    pids: list[int] = field(default_factory=list)  # the node's processes, read once it is up

    def kill(self) -> None:
        """kill -9 the node and everything it started (a machine dropping off the network)."""
        for pid in [self.process.pid, *_children(self.process.pid), *self.pids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)


@dataclass
class LocalRayCluster:
    """`with LocalRayCluster() as cluster:` a head (1 CPU) and a worker node (1 CPU) on 127.0.0.1."""

    cpus_per_node: int = 1
    head: Node | None = None
    worker: Node | None = None
    address: str = ""
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rt", dir="/tmp")))  # short: socket paths

    def env(self) -> dict[str, str]:
        return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}

    def _start(self, name: str, args: list[str]) -> Node:
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    RAY,
                    "start",
                    "--block",
                    "--disable-usage-stats",
                    "--node-ip-address",
                    "127.0.0.1",
                    "--num-cpus",
                    str(self.cpus_per_node),
                    "--num-gpus",
                    "0",
                    "--object-store-memory",
                    OBJECT_STORE,
                    *_node_ports(),
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        return Node(process, log)

    def __enter__(self) -> LocalRayCluster:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.head = self._start(
            "head",
            [
                "--head",
                "--port",
                str(port),
                "--include-dashboard",
                "false",
                "--ray-client-server-port",
                str(free_port()),
                "--temp-dir",
                str(self.root / "head"),
            ],
        )
        self._wait_nodes(1)
        self.worker = self._start("worker", ["--address", self.address])
        self._wait_nodes(2)
        for node in (self.head, self.worker):
            node.pids = _children(node.process.pid)
        return self

    def _wait_nodes(self, count: int, timeout: float = 120) -> None:
        code = (
            "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in (self.head, self.worker):
                if node is not None and node.process.poll() is not None:
                    raise RuntimeError(f"ray start exited {node.process.returncode}: {node.log.read_text()[-2000:]}")
            probe = subprocess.run(
                [sys.executable, "-c", code, self.address], capture_output=True, text=True, env=self.env(), timeout=60
            )
            if probe.returncode == 0 and probe.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(1)
        raise RuntimeError(f"the local Ray cluster did not reach {count} node(s) in {timeout} s")

    def __exit__(self, *exc) -> None:
        for node in (self.worker, self.head):
            if node is None:
                continue
            pids = [node.process.pid, *_children(node.process.pid), *node.pids]
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
                try:
                    node.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            for pid in pids:  # whatever outlived it
                if _alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
