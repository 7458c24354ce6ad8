"""The real store at scale: N clustered vectors (the bundle's width, 768-d for ViT-B) through the catalog and
the usearch generations (not raw usearch alone). Measures the catalog writes, the first publish (the HNSW build), a later
publish after 1% more images, a cold query in a new process, warm query latency and recall@10
against exact search (with expansion_search as the store sets it), resident memory, and `dupes` with
planted near-duplicates (recall of the planted pairs). Paths are made up: no image is decoded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PLANTED_SHARE = 0.01  # this share of the images gets a near-duplicate (the vector plus small noise)
QUERY_PROGRAM = """
import sys, time, json, numpy as np
started = time.perf_counter()
from edge_search.runtime.library import Library
library = Library(sys.argv[1])
hits = library.query(vector=np.load(sys.argv[2]), k=10).hits
print(json.dumps({"seconds": time.perf_counter() - started, "hits": len(hits),
                  "rss_mb": int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:'))) / 1024}))
"""


DUPES_PROGRAM = """
import sys, time, json
started = time.perf_counter()
from edge_search.runtime.library import Library
report = Library(sys.argv[1]).dupes(threshold=float(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - started, "groups": len(report.groups),
                  "rss_mb": int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:'))) / 1024}))
"""


def _signature(number: int, twins_from: int) -> bytes:
    """A made-up photo's pixel signature: a planted near-duplicate (`number` >= `twins_from`) has its original's,
    so `dupes`' pixel check is exercised without decoding anything."""
    from edge_search.runtime.model import signature

    seed = number - twins_from if number >= twins_from else number
    cells = np.random.default_rng(seed).integers(0, 256, size=(signature.SIDE, signature.SIDE, 4), dtype=np.uint8)
    cells[..., 3] = 255
    return signature.pack(cells, aspect=1.5)


def _rows(start: int, vectors: np.ndarray, twins_from: int | None = None):
    twins_from = twins_from if twins_from is not None else 1 << 62
    for offset, vector in enumerate(vectors):
        number = start + offset
        path = f"/photos/{number // 1000:04d}/{number:07d}.jpg".encode()
        yield (
            path,
            3_000_000 + number,
            1_700_000_000_000_000_000 + number,
            hashlib.sha256(path).hexdigest(),
            vector,
            None,
            _signature(number, twins_from),
        )


def store_scale(
    bundle_dir: Path, count: int, work: Path, queries: int = 200, dupes_threshold: float = 0.9, dupes: bool = True
) -> dict:
    from edge_search.export.synthetic import clustered_embeddings
    from edge_search.runtime.jobs.dupes import find_duplicates
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.store import vector_index as vi
    from edge_search.runtime.store.generations import IndexReader, IndexWriter

    rng = np.random.default_rng(count)
    dim = Bundle.load(bundle_dir).manifest.embedding_dim
    data = clustered_embeddings(count + queries, dim, max(count // 100, 10), seed=count)
    base, probe = data[:count].copy(), data[count:]
    planted = rng.choice(count // 2, size=int(count * PLANTED_SHARE), replace=False)
    twins = planted + count // 2
    noisy = base[planted] + rng.normal(0, 0.004, size=(len(planted), base.shape[1])).astype(np.float32)
    base[twins] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    later = count // 100

    directory = work / f"store-{count}"
    shutil.rmtree(directory, ignore_errors=True)
    result: dict = {"vectors": count}
    with IndexWriter(directory, Bundle.load(bundle_dir), precision="int8") as writer:
        started = time.perf_counter()
        for chunk in range(0, count - later, 10_000):
            writer.commit_results(_rows(chunk, base[chunk : min(chunk + 10_000, count - later)], count // 2))
        result["catalog_write_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        writer.publish()
        result["first_publish_s"] = round(time.perf_counter() - started, 1)
        writer.commit_results(_rows(count - later, base[count - later :], count // 2))
        started = time.perf_counter()
        writer.publish()
        result["publish_after_1pct_more_s"] = round(time.perf_counter() - started, 1)
        settings = writer.settings
    result["index_file_mb"] = round(sum(p.stat().st_size for p in directory.glob("index.*.usearch")) / 2**20, 1)
    result["catalog_mb"] = round((directory / "catalog.sqlite").stat().st_size / 2**20, 1)
    result["dtype"] = settings.dtype
    result["search"] = "exact" if count <= vi.EXACT_SEARCH_MAX else "hnsw"

    np.save(work / "probe.npy", probe[0])
    cold = []
    for _ in range(3):
        answer = subprocess.run(
            [sys.executable, "-c", QUERY_PROGRAM, str(directory), str(work / "probe.npy")],
            capture_output=True,
            text=True,
            check=True,
        )
        cold.append(json.loads(answer.stdout))
    result["cold_query_s"] = round(statistics.median(c["seconds"] for c in cold), 3)
    result["query_process_rss_mb"] = round(statistics.median(c["rss_mb"] for c in cold), 1)

    truth = _exact_top10(base, probe)
    reader = IndexReader(directory)
    try:
        reader.search(probe[0], 10)
        latencies, found = [], []
        for query in probe:
            started = time.perf_counter()
            hits = reader.search(query, 10)
            latencies.append(time.perf_counter() - started)
            found.append([int(h.path.rsplit("/", 1)[1][:7]) for h in hits])
        result["warm_query_ms_p50"] = round(1000 * statistics.median(latencies), 2)
        result["warm_query_ms_p95"] = round(1000 * float(np.percentile(latencies, 95)), 2)
        result["recall_at_10"] = round(float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])), 4)
        if dupes:
            started = time.perf_counter()
            report = find_duplicates(reader.catalog, reader.index(), dupes_threshold, index_dtype=settings.dtype)
            result["dupes_s"] = round(time.perf_counter() - started, 1)
    finally:
        reader.close()
    result["expansion_search_used"] = vi.expansion_for(count, settings.expansion_search)
    if not dupes:
        return result
    alone = subprocess.run(  # `dupes` as a user runs it: a process of its own, its peak memory
        [sys.executable, "-c", DUPES_PROGRAM, str(directory), str(dupes_threshold)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(alone.stdout)
    result["dupes_process_s"] = round(measured["seconds"], 1)
    result["dupes_process_peak_rss_mb"] = round(measured["rss_mb"], 1)
    grouped = {}
    for number, group in enumerate(report.groups):
        for file in group.files:
            grouped[int(file.path.rsplit("/", 1)[1][:7])] = number
    caught = sum(1 for a, b in zip(planted, twins) if a in grouped and grouped.get(b) == grouped[a])
    result["dupes_groups"] = len(report.groups)
    result["dupes_planted_pairs_found"] = round(caught / len(planted), 4)
    result["dupes_threshold"] = dupes_threshold
    return result


def _exact_top10(base: np.ndarray, probe: np.ndarray) -> list[list[int]]:
    scores = np.concatenate([probe @ base[i : i + 100_000].T for i in range(0, len(base), 100_000)], axis=1)
    return [list(row) for row in np.argsort(-scores, axis=1)[:, :10]]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000", help="comma-separated vector counts")
    parser.add_argument("--bundle", default=str(Path(__file__).parent / ".cache" / "vit-b16-random"))
    parser.add_argument("--skip-dupes", action="store_true", help="leave out `dupes` (long at 1M)")
    parser.add_argument("--dupes-threshold", type=float, default=0.9, help="the DINOv2/ViT default (0.9)")
    parser.add_argument("--work", default=str(Path(__file__).parent / ".cache" / "store-scale"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for size in (int(s) for s in args.sizes.split(",")):
        measured = store_scale(
            Path(args.bundle), size, work, dupes=not args.skip_dupes, dupes_threshold=args.dupes_threshold
        )
        print(json.dumps(measured), flush=True)
        shutil.rmtree(work / f"store-{size}", ignore_errors=True)
    os.remove(work / "probe.npy")
