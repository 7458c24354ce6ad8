"""The warm service against a cold CLI query on the same machine, index and image: p50/p95 latency of
`POST /api/query` with 1 and 8 concurrent clients, and of `edge-search query` in a new process; and,
with watching on, how long a photo copied into a watched folder takes to become searchable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _upload(base: str, content: bytes) -> float:
    return _query(base, content)[0]


def _query(base: str, content: bytes) -> tuple[float, list[dict]]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q"\r\n\r\n'.encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        base + "/api/query", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        results = json.loads(response.read())["results"]
    return time.perf_counter() - started, results


def _start_service(edge: list[str], env: dict, *args: str) -> tuple[subprocess.Popen, str] | None:
    port = _free_port()
    proc = subprocess.Popen(
        edge + ["serve", "--port", str(port), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(base + "/api/health", timeout=5).read()
            return proc, base
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                return None
            time.sleep(0.2)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return round(int(next(line.split()[1] for line in status if line.startswith("VmRSS:"))) / 1024, 1)


def _percentiles(seconds: list[float]) -> dict:
    return {
        "p50_ms": round(1000 * statistics.median(seconds), 1),
        "p95_ms": round(1000 * float(np.percentile(seconds, 95)), 1),
        "requests": len(seconds),
    }


def serve_vs_cold(
    bundle: Path, index: Path, image: Path, precision: str = "int8", cold_runs: int = 5, warm_requests: int = 24
) -> dict:
    env = {
        **os.environ,
        "EDGE_SEARCH_MODEL": str(bundle),
        "EDGE_SEARCH_INDEX": str(index),
        "EDGE_SEARCH_DEVICE": "cpu",
        "EDGE_SEARCH_PRECISION": precision,
    }
    edge = [sys.executable, "-m", "edge_search.runtime"]
    cold = []
    for _ in range(cold_runs):
        started = time.perf_counter()
        subprocess.run(edge + ["query", str(image), "-k", "10"], env=env, capture_output=True, check=True)
        cold.append(time.perf_counter() - started)
    started_service = _start_service(edge, env, "--no-watch")
    if started_service is None:
        return {"status": "not run: the service did not start"}
    proc, base = started_service
    try:
        content = image.read_bytes()
        _upload(base, content)  # first request warms the worker thread's reader
        one = [_upload(base, content) for _ in range(warm_requests)]
        eight: list[float] = []
        lock = threading.Lock()

        def client() -> None:
            for _ in range(max(1, warm_requests // 8)):
                took = _upload(base, content)
                with lock:
                    eight.append(took)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rss_mb = _rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {
        "cold_cli_query": _percentiles(cold),
        "warm_1_client": _percentiles(one),
        "warm_8_clients": _percentiles(eight),
        "speedup_p50": round(statistics.median(cold) / statistics.median(one), 1),
        "service_rss_mb": rss_mb,
        "precision": precision,
    }


def new_photo_to_searchable(
    bundle: Path, photos: list[Path], work: Path, precision: str = "int8", seed_count: int = 24, new_count: int = 5
) -> dict:
    """Index `seed_count` photos, serve them with watching on, then copy `new_count` more in one at a
    time: seconds from the copy until a query with that photo finds it first (file event, a second of
    quiet, the incremental pass, the publish, the query itself)."""
    if len(photos) < seed_count + new_count:
        return {"status": f"not run: needs {seed_count + new_count} photos"}
    shutil.rmtree(work, ignore_errors=True)
    folder, index = work / "photos", work / "index"
    folder.mkdir(parents=True)
    for path in photos[:seed_count]:
        shutil.copy(path, folder / path.name)
    env = {
        **os.environ,
        "EDGE_SEARCH_MODEL": str(bundle),
        "EDGE_SEARCH_INDEX": str(index),
        "EDGE_SEARCH_DEVICE": "cpu",
        "EDGE_SEARCH_PRECISION": precision,
    }
    edge = [sys.executable, "-m", "edge_search.runtime"]
    subprocess.run(edge + ["index", str(folder)], env=env, capture_output=True, check=True)
    started_service = _start_service(edge, env)
    if started_service is None:
        return {"status": "not run: the service did not start"}
    proc, base = started_service
    delays = []
    try:
        time.sleep(3)  # the catch-up pass at start finds nothing new
        for path in photos[seed_count : seed_count + new_count]:
            content = path.read_bytes()
            copied = time.perf_counter()
            shutil.copy(path, folder / path.name)
            while time.perf_counter() - copied < 120:
                _, results = _query(base, content)
                if results and results[0]["path"] == str(folder / path.name):
                    break
                time.sleep(0.05)
            delays.append(time.perf_counter() - copied)
        rss_mb = _rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {
        "seconds": [round(d, 2) for d in delays],
        "median_s": round(statistics.median(delays), 2),
        "max_s": round(max(delays), 2),
        "service_rss_mb": rss_mb,
        "precision": precision,
        "files": [p.name for p in photos[seed_count : seed_count + new_count]],
    }
