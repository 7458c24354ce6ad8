"""The warm service against a cold CLI query on the same machine, index and image: p50/p95 latency of
`POST /api/query` with 1 and 8 concurrent clients, and of `edge-search query` in a new process."""

from __future__ import annotations

import json
import os
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
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q"\r\n\r\n'.encode() + content
            + f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(base + "/api/query", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        json.loads(response.read())
    return time.perf_counter() - started


def _percentiles(seconds: list[float]) -> dict:
    return {"p50_ms": round(1000 * statistics.median(seconds), 1), "p95_ms": round(1000 * float(np.percentile(seconds, 95)), 1),
            "requests": len(seconds)}


def serve_vs_cold(bundle: Path, index: Path, image: Path, precision: str = "int8", cold_runs: int = 5, warm_requests: int = 24) -> dict:
    env = {**os.environ, "EDGE_SEARCH_MODEL": str(bundle), "EDGE_SEARCH_INDEX": str(index), "EDGE_SEARCH_DEVICE": "cpu",
           "EDGE_SEARCH_PRECISION": precision}
    edge = [sys.executable, "-m", "edge_search.runtime"]
    cold = []
    for _ in range(cold_runs):
        started = time.perf_counter()
        subprocess.run(edge + ["query", str(image), "-k", "10"], env=env, capture_output=True, check=True)
        cold.append(time.perf_counter() - started)
    port = _free_port()
    proc = subprocess.Popen(edge + ["serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/api/health", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    return {"status": "not run: the service did not start"}
                time.sleep(0.2)
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
        rss_kb = int(next(line.split()[1] for line in open(f"/proc/{proc.pid}/status") if line.startswith("VmRSS:")))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {
        "cold_cli_query": _percentiles(cold),
        "warm_1_client": _percentiles(one),
        "warm_8_clients": _percentiles(eight),
        "speedup_p50": round(statistics.median(cold) / statistics.median(one), 1),
        "service_rss_mb": round(rss_kb / 1024, 1),
        "precision": precision,
    }
