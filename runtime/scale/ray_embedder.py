"""Embedding on a Ray cluster, with the box in charge of everything else.

The box keeps the folder walk, the size/mtime checks, the content hashes (so moved and touched files
need no model run), the writer lock, the commits, publishing and pruning: `run_index` is unchanged and
only its embedder is this one. Each Ray actor holds one onnxruntime session of the same bundle and
precision and runs the runtime's own loading and preprocessing (a bad file is an error result for that
file, never a failed batch). Batches go to the actors as they free up; results stream back and are
committed as they arrive, so killing the box process loses nothing committed, and a batch whose actor
died (its node was killed) is handed to another actor.

Files reach the actors by path (a shared filesystem mounted at the same place on every node, and the
bundle at the same path) or, with `ship_bytes`, as bytes through Ray's object store together with the
bundle's manifest and graph, so nodes need only the `ray` extra.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_search.runtime.errors import ClusterError, EdgeSearchError, UsageError
from edge_search.runtime.model.bundle import MANIFEST_NAME, Bundle
from edge_search.runtime.model.embedder import EmbedResult, read_file
from edge_search.runtime.options import Device, ModelOptions, Precision

if TYPE_CHECKING:
    from edge_search.runtime.model.model import Model

DEFAULT_CPUS_PER_WORKER = 4  # onnxruntime scales well to ~4 intra-op threads per image batch; more actors beyond
IN_FLIGHT_PER_WORKER = 2  # the next batch waits in the actor's queue while one runs: no idle gap between calls
READERS = 4  # box threads reading + hashing files (hashlib and file reads release the GIL)


@dataclass(frozen=True)
class RayOptions:
    """How `edge-search index --ray ADDRESS` uses the cluster."""

    address: str
    ship_bytes: bool = False  # send file bytes (and the bundle) through the object store instead of paths
    cpus_per_worker: int | None = None  # None: min(4, the smallest node's CPUs)
    start_timeout_s: float = 60.0  # workers not placed within this are given up (no silent hang)
    result_timeout_s: float = 600.0  # no batch back for this long: the cluster is stuck, stop with an error
    batch_size: int = 8


@dataclass
class WorkerPlan:
    """What the pool asked the cluster for, for the report and the error messages."""

    cpus_per_worker: int = 0
    gpus_per_worker: int = 0
    ready: list[dict[str, Any]] = field(default_factory=list)
    lost: int = 0  # actors that died during the run (their batches were redone elsewhere)

    def describe(self) -> str:
        kind = f"{self.cpus_per_worker} CPU" + (f" + {self.gpus_per_worker} GPU" if self.gpus_per_worker else "")
        hosts = len({w["node"] for w in self.ready})
        return f"{len(self.ready)} Ray worker(s) × {kind} on {hosts} node(s)"


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise UsageError(
            "--ray needs Ray on this box and on every node: pip install 'edge-search[ray]' "
            "(the same Ray version everywhere)."
        ) from exc
    return ray


class EmbedWorker:
    """One Ray actor: the bundle opened once, then batches of files in, (path, vector, error, sha256, pixel
    signature) out."""

    def __init__(self, bundle_source: str | dict[str, bytes], identity: str, options: ModelOptions):
        from edge_search.runtime.model.model import Model  # on the worker: import the runtime only here

        if isinstance(bundle_source, dict):  # shipped through the object store: write it where this node can read it
            root = Path(tempfile.mkdtemp(prefix="edge-search-bundle-"))
            for name, data in bundle_source.items():
                (root / name).write_bytes(data)
        else:
            root = Path(bundle_source)
        bundle = Bundle.load(root)
        if bundle.identity != identity:
            raise EdgeSearchError(
                f"the bundle at {root} on this node is not the one the box indexes with "
                f"(identity {bundle.identity[:12]}… instead of {identity[:12]}…)"
            )
        self.model = Model.open(bundle, options)

    def ready(self) -> dict[str, Any]:
        import socket

        return {
            "node": self._node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "provider": self.model.provider,
            "precision": self.model.precision,
            "threads": self.model.threads,
        }

    @staticmethod
    def _node_id() -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def embed(
        self, items: list[tuple[str, bytes | None]]
    ) -> list[tuple[str, np.ndarray | None, str | None, str | None, bytes | None]]:
        sources = [(path, data) if data is not None else path for path, data in items]
        return [(str(r.path), r.vector, r.error, r.sha256, r.signature) for r in self.model.embedder.embed(sources)]


def shipped_bundle(bundle: Bundle, precision: str) -> dict[str, bytes]:
    """The manifest (narrowed to the one image graph in use) and that graph, for nodes without the bundle.
    The identity does not depend on which precisions a manifest lists, so the worker's check still holds."""
    manifest = bundle.manifest
    spec = manifest.files[precision]
    narrowed = replace(manifest, files={precision: spec}, text=None)
    return {
        MANIFEST_NAME: json.dumps(narrowed.to_dict(), indent=2).encode(),
        spec.path: (bundle.root / spec.path).read_bytes(),
    }


class RayEmbedder:
    """Drop-in for `Embedder` in `run_index`: same `embed(paths, reuse=, stop=)` contract, results in
    the order they come back (the indexer does not need input order)."""

    def __init__(self, model: Model, options: RayOptions):
        self.model = model
        self.options = options
        self.plan = WorkerPlan()
        self._ray = _ray()
        self._connect()
        self._load: dict[Any, int] = {}  # each live actor -> its batches in flight
        self._lost = _lost_errors(self._ray)
        self._actor_class: Any = None  # ray.remote(EmbedWorker), made once connected
        self._bundle_ref = None
        self._start_pool()

    # -- cluster ------------------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self._ray
        _check_reachable(self.options.address)  # ray.init retries a dead address for many minutes
        try:
            ray.init(
                address=self.options.address,
                namespace="edge-search",
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=True,
            )
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError: Ray's own words follow
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(
                f"Cannot join the Ray cluster at {self.options.address}: {reason}. Start one with "
                "`ray start --head` (docs/deploy.md: Scaling out) or check the address."
            ) from exc

    def _sizing(self) -> tuple[int, int, int, int]:
        """(workers, cpus each, gpus each) that the cluster's free resources hold now, and the CPUs of
        its largest node (a worker bigger than that can never be placed)."""
        ray = self._ray
        free = ray.available_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        sizes = [int(n["Resources"].get("CPU", 0)) for n in nodes if n["Resources"].get("CPU", 0) >= 1] or [0]
        cpus = self.options.cpus_per_worker or max(1, min(DEFAULT_CPUS_PER_WORKER, min(sizes)))
        gpus = int(free.get("GPU", 0)) if self.model.precision in ("fp16", "fp32") else 0
        if gpus:
            return min(gpus, int(free.get("CPU", 0) // cpus) or gpus), cpus, 1, max(sizes)
        return int(free.get("CPU", 0) // cpus), cpus, 0, max(sizes)

    def _start_pool(self) -> None:
        ray = self._ray
        deadline = time.monotonic() + self.options.start_timeout_s
        while True:  # resources still held by a job that just ended come back within seconds
            workers, cpus, gpus, largest = self._sizing()
            if workers >= 1:
                break
            if cpus > largest:
                raise ClusterError(
                    f"No node of the Ray cluster at {self.options.address} has {cpus} CPU(s) for a worker "
                    f"(the largest has {largest}). Lower --ray-cpus-per-worker."
                )
            if time.monotonic() > deadline:
                free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
                raise ClusterError(
                    f"The Ray cluster at {self.options.address} had no room for a worker of {cpus} CPU(s) "
                    f"for {self.options.start_timeout_s:.0f} s (free now: {free or 'nothing'}). Free some "
                    "resources, or lower --ray-cpus-per-worker."
                )
            time.sleep(1.0)
        self.plan.cpus_per_worker, self.plan.gpus_per_worker = cpus, gpus
        if self.options.ship_bytes:
            self._bundle_ref = ray.put(shipped_bundle(self.model.bundle, self.model.precision))
        self._actor_class = ray.remote(EmbedWorker)
        self._add_workers(workers)
        if not self._load:
            self.close()
            raise ClusterError(
                f"The Ray cluster at {self.options.address} placed none of {workers} worker(s) of "
                f"{cpus} CPU(s) within {self.options.start_timeout_s:.0f} s (its resources are taken, or "
                "its nodes cannot start them). Nothing was embedded."
            )

    def _add_workers(self, count: int) -> None:
        ray = self._ray
        cpus, gpus = self.plan.cpus_per_worker, self.plan.gpus_per_worker
        bundle = self._bundle_ref if self._bundle_ref is not None else str(self.model.bundle.root)
        worker_options = replace(
            self.model.options,
            device=Device.cuda if gpus else Device.cpu,
            precision=Precision(self.model.precision),
            threads=cpus,
            batch_size=self.options.batch_size,
            max_megapixels=self.model.preprocessor.max_pixels / 1e6,
        )
        actors = [
            self._actor_class.options(num_cpus=cpus, num_gpus=gpus, max_restarts=0).remote(
                bundle, self.model.bundle.identity, worker_options
            )
            for _ in range(count)
        ]
        pending = {actor.ready.remote(): actor for actor in actors}
        deadline = time.monotonic() + self.options.start_timeout_s
        failures: list[str] = []
        while pending and time.monotonic() < deadline:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            for ref in done:
                actor = pending.pop(ref)
                try:
                    self.plan.ready.append(ray.get(ref))
                except Exception as exc:  # the actor could not open the bundle on its node, or died starting
                    failures.append(_cause(exc))
                    ray.kill(actor)
                    continue
                self._load[actor] = 0
        for actor in pending.values():  # never placed: give the resources back instead of waiting forever
            ray.kill(actor)
        if failures and not self._load:
            hint = (
                ""
                if self.options.ship_bytes
                else (" Every node needs the bundle at the same path (or use --ray-ship-bytes, which sends it).")
            )
            raise ClusterError(f"No Ray worker could start: {failures[0]}.{hint}")

    def describe(self) -> str:
        return self.plan.describe()

    def close(self) -> None:
        ray = self._ray
        for actor in self._load:
            try:
                ray.kill(actor)
            except Exception:  # already gone with its node
                pass
        self._load.clear()
        if ray.is_initialized():
            ray.shutdown()

    # -- embedding ----------------------------------------------------------------------------------
    def embed(
        self, paths: Iterable[Path | str], *, reuse: Container[str] = frozenset(), stop: threading.Event | None = None
    ) -> Iterator[EmbedResult]:
        """Read + hash on the box (known content never leaves it), embed the rest on the cluster."""
        ray = self._ray
        size = self.options.batch_size
        window = max(size, len(self._load) * IN_FLIGHT_PER_WORKER * size)  # files read ahead of the cluster
        queued: deque[list[tuple[str, bytes | None]]] = deque()
        batch: list[tuple[str, bytes | None]] = []
        in_flight: dict[Any, tuple[Any, list]] = {}
        reading: deque[tuple[str, Future]] = deque()
        source = iter(paths)
        exhausted = False
        with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="hash") as pool:
            while True:
                stopping = stop is not None and stop.is_set()
                if stopping:
                    exhausted = True
                    queued.clear()
                    batch = []
                    for _, future in reading:
                        future.cancel()
                    reading.clear()
                while not exhausted and len(reading) + sum(map(len, queued)) + len(batch) < window:
                    try:
                        path = os.fspath(next(source))
                    except StopIteration:
                        exhausted = True
                        break
                    reading.append((path, pool.submit(_read_and_hash, path)))
                while reading and (reading[0][1].done() or not in_flight):
                    path, future = reading.popleft()
                    data, sha = future.result()
                    if isinstance(data, str):
                        yield EmbedResult(Path(path), error=data)
                    elif sha in reuse:
                        yield EmbedResult(Path(path), sha256=sha, known=True)
                    else:
                        batch.append((path, data if self.options.ship_bytes else None))
                        if len(batch) >= size:
                            queued.append(batch)
                            batch = []
                if batch and exhausted and not reading:
                    queued.append(batch)
                    batch = []
                self._dispatch(queued, in_flight)
                if not in_flight:
                    if exhausted and not reading and not queued:
                        return
                    continue
                done, _ = ray.wait(
                    list(in_flight), num_returns=1, timeout=0.05 if reading else self.options.result_timeout_s
                )
                if not done:
                    if reading:
                        continue
                    raise ClusterError(
                        f"The Ray cluster returned nothing for {self.options.result_timeout_s:.0f} s "
                        f"({len(in_flight)} batch(es) outstanding on {len(self._load)} worker(s)). What "
                        "was embedded before is committed; run the same command to resume."
                    )
                for ref in done:
                    actor, items = in_flight.pop(ref)
                    try:
                        rows = ray.get(ref)
                    except self._lost as exc:
                        self._lose(actor, exc)
                        queued.appendleft(items)  # redone by another worker
                        continue
                    except Exception as exc:
                        raise ClusterError(f"A Ray worker failed on a batch: {_cause(exc)}.") from exc
                    self._load[actor] -= 1
                    for path, vector, error, sha, signature in rows:
                        yield EmbedResult(Path(path), vector=vector, error=error, sha256=sha, signature=signature)

    def _dispatch(self, queued: deque, in_flight: dict) -> None:
        for actor in list(self._load):
            while queued and self._load[actor] < IN_FLIGHT_PER_WORKER:
                items = queued.popleft()
                in_flight[actor.embed.remote(items)] = (actor, items)
                self._load[actor] += 1

    def _lose(self, actor: Any, exc: BaseException) -> None:
        """An actor died (its node was killed or lost): drop it, replace it where the cluster has room."""
        if actor in self._load:
            del self._load[actor]
            self.plan.lost += 1
        if not self._load:
            workers, *_ = self._sizing()
            if workers:
                self._add_workers(workers)
            if not self._load:
                raise ClusterError(
                    "Every Ray worker was lost and the cluster has no room for new ones. What was "
                    "embedded is committed; run the same command to resume."
                ) from exc


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """ClusterError at once when nothing listens at HOST:PORT (the head's GCS port)."""
    import socket

    host, _, port = address.rpartition(":")
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    if not host or not port.isdigit():
        raise UsageError(f"--ray takes the head node's HOST:PORT (e.g. 10.0.0.5:6379), not {address!r}.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(
            f"Cannot join the Ray cluster at {address}: nothing answers there ({exc.strerror or exc}). "
            "Start one with `ray start --head` (docs/deploy.md: Scaling out) or check the address."
        ) from exc


def _lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors that mean "the actor (or its node) is gone": its batch can be redone elsewhere."""
    return tuple(
        getattr(ray.exceptions, name)
        for name in (
            "RayActorError",
            "ActorDiedError",
            "ActorUnavailableError",
            "NodeDiedError",
            "ObjectLostError",
            "WorkerCrashedError",
        )
        if hasattr(ray.exceptions, name)
    )


def _read_and_hash(path: str) -> tuple[bytes | str, str | None]:
    data = read_file(path)
    if isinstance(data, str):
        return data, None
    return data, hashlib.sha256(data).hexdigest()


def _cause(exc: BaseException) -> str:
    """The innermost readable reason of a Ray error (Ray wraps the worker's exception)."""
    inner = getattr(exc, "cause", None) or exc.__cause__
    if isinstance(inner, BaseException) and inner is not exc:
        return _cause(inner)
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
