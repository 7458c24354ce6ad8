"""Scaling out, measured: `index --ray` on a local two-node Ray cluster against the same run on one box,
and `sync` / `query --milvus` of a 10k-image index against Milvus Lite and a Milvus server.

    python -m benchmarks.scale_out [--images real|DIR] [--vectors 10000] [--skip-ray] [--skip-milvus]

Both Ray runs use the same machine, the same bundle, the same photos and the same CPUs (the cluster: two
nodes of half the cores each), alternated, so the ratio is the cluster's overhead, not a gain: on one
machine there is nothing to gain. The Milvus rows use the real catalog (clustered 768-d vectors written
through the store, as benchmarks/store_scale.py does) and the real `edge-search sync` / `query --milvus`
commands in new processes, as users run them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from .common import CACHE, HERE, default_bundle, machine

sys.path.insert(0, str(HERE.parent / "tests"))  # the local two-node cluster helper the tests use


def _edge_search(*args: str, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("edge-search")), *args], env=env, capture_output=True, text=True
    )
    return time.perf_counter() - started, done


def ray_vs_box(bundle: Path, images: Path, work: Path, rounds: int = 2) -> dict:
    """images/s of `edge-search index` on this box vs through a two-node local Ray cluster (alternated)."""
    from cluster import LocalRayCluster

    cores = len(os.sched_getaffinity(0))
    env = {**os.environ, "EDGE_SEARCH_MODEL": str(bundle), "EDGE_SEARCH_DEVICE": "cpu", "EDGE_SEARCH_PRECISION": "int8"}
    box_rates, cluster_rates, lost = [], [], []
    with LocalRayCluster(cpus_per_node=max(1, cores // 2)) as cluster:
        for _ in range(rounds):
            for where in ("box", "cluster"):
                shutil.rmtree(work / where, ignore_errors=True)
                extra = ["--ray", cluster.address] if where == "cluster" else []
                _, done = _edge_search("index", str(images), "--index", str(work / where), "--json", *extra, env=env)
                if done.returncode not in (0, 4):
                    raise SystemExit(f"index on the {where} failed: {done.stderr[-2000:]}")
                report = json.loads(done.stdout)
                (box_rates if where == "box" else cluster_rates).append(report["images_per_s"])
                if where == "cluster":
                    lost.append(report["cluster"])
    return {
        "images": len([p for p in images.iterdir() if p.is_file()]),
        "cores": cores,
        "cluster": f"2 nodes × {max(1, cores // 2)} CPU on this machine",
        "workers": lost[-1],
        "box_images_per_s": box_rates,
        "cluster_images_per_s": cluster_rates,
        "cluster_vs_box": round(statistics.median(cluster_rates) / statistics.median(box_rates), 2),
    }


def _catalog(bundle: Path, count: int, work: Path) -> Path:
    """An index of `count` clustered 768-d vectors written through the real store."""
    from edge_search.export.synthetic import clustered_embeddings
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.store.generations import IndexWriter

    from .store_scale import _rows

    directory = work / f"fleet-{count}"
    shutil.rmtree(directory, ignore_errors=True)
    loaded = Bundle.load(bundle)
    vectors = clustered_embeddings(count, loaded.manifest.embedding_dim, max(count // 100, 10), seed=count)
    with IndexWriter(directory, loaded, precision="int8") as writer:
        writer.commit_results(_rows(0, vectors))
        writer.publish()
    return directory


def milvus_fleet(bundle: Path, count: int, work: Path, query_image: Path, queries: int = 5) -> list[dict]:
    """sync time (first, and unchanged), and cold `query --milvus` latency, against Lite and a server."""
    from cluster import free_port
    from milvus import MilvusServer, MilvusServerConfig

    index_dir = _catalog(bundle, count, work)
    env = {
        **os.environ,
        "EDGE_SEARCH_MODEL": str(bundle),
        "EDGE_SEARCH_DEVICE": "cpu",
        "EDGE_SEARCH_INDEX": str(index_dir),
        "EDGE_SEARCH_PRECISION": "int8",
    }
    server = MilvusServer(MilvusServerConfig(proxy_port=free_port()))
    server.config.configs.update(data_dir=str(work / "milvus-server"))
    server.config.resolve_storage()
    shutil.rmtree(work / "milvus-server", ignore_errors=True)
    lite = work / "fleet.db"
    shutil.rmtree(lite, ignore_errors=True)
    lite.unlink(missing_ok=True)
    rows = []
    server.start()
    try:
        for name, uri in (
            ("Milvus Lite", str(lite)),
            ("Milvus 2.3.5 server", f"http://127.0.0.1:{server.listen_port}"),
        ):
            first_s, first = _edge_search("sync", "--milvus", uri, "--box", "bench", "--json", env=env)
            again_s, again = _edge_search("sync", "--milvus", uri, "--box", "bench", "--json", env=env)
            if first.returncode or again.returncode:
                raise SystemExit(f"sync to {name} failed: {first.stderr[-1500:]} {again.stderr[-1500:]}")
            latencies = []
            for _ in range(queries):
                seconds, done = _edge_search("query", str(query_image), "--milvus", uri, "-k", "10", "--json", env=env)
                if done.returncode:
                    raise SystemExit(f"query --milvus {name} failed: {done.stderr[-1500:]}")
                latencies.append(json.loads(done.stdout)["latency_ms"])
            warm_ms, recall = _warm_search(bundle, index_dir, uri)
            local = [
                json.loads(_edge_search("query", str(query_image), "-k", "10", "--json", env=env)[1].stdout)[
                    "latency_ms"
                ]
                for _ in range(queries)
            ]
            rows.append(
                {
                    "target": name,
                    "vectors": count,
                    "first_sync_s": round(first_s, 1),
                    "inside_first_sync_s": json.loads(first.stdout)["seconds"],
                    "unchanged_sync_s": round(again_s, 1),
                    "query_ms_median": round(statistics.median(latencies)),
                    "query_ms": latencies,
                    "local_query_ms_median": round(statistics.median(local)),
                    "warm_search_ms_median": warm_ms[0],
                    "warm_bounded_search_ms_median": warm_ms[1],
                    "recall_at_10": recall,
                }
            )
    finally:
        server.stop()
    return rows


def _warm_search(bundle: Path, index_dir: Path, uri: str, probes: int = 50) -> tuple[float, float]:
    """What a long-lived client (the service) sees: median search latency over an open collection, and
    recall@10 of Milvus's HNSW against an exact scan of the catalog's float32 vectors."""
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.scale.fleet import Fleet
    from edge_search.runtime.store.catalog import Catalog

    catalog = Catalog.open(index_dir, create=False)
    keys, vectors = map(np.concatenate, zip(*catalog.vectors()))
    catalog.close()
    loaded = Bundle.load(bundle)
    fleet = Fleet.open(uri, identity=loaded.identity, dim=loaded.manifest.embedding_dim)
    deadline = time.monotonic() + 300  # a server builds HNSW on sealed segments in the background: measure after
    while time.monotonic() < deadline:
        described = fleet.client.describe_index(fleet.name, "embedding")
        if "indexed_rows" not in described or described["indexed_rows"] >= described.get("total_rows", 0):
            break
        time.sleep(2)
    rng = np.random.default_rng(1)
    queries = vectors[rng.choice(len(vectors), probes, replace=False)] + rng.normal(0, 0.02, (probes, vectors.shape[1]))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    latencies, bounded, overlap = [], [], []
    for query in queries:
        started = time.perf_counter()
        hits = fleet.search(query, 10, box="bench")
        latencies.append((time.perf_counter() - started) * 1000)
        exact = set(keys[np.argsort(-(vectors @ query))[:10]].tolist())
        overlap.append(len(exact & {hit.key for hit in hits}) / 10)
        started = time.perf_counter()
        fleet.search(query, 10, box="bench", consistency="Bounded")
        bounded.append((time.perf_counter() - started) * 1000)
    fleet.close()
    return (round(statistics.median(latencies), 1), round(statistics.median(bounded), 1)), round(
        float(np.mean(overlap)), 3
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_out", description=__doc__)
    parser.add_argument("--images", default="real", help="`real` (Debian's wallpaper photographs) or a folder")
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-milvus", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    bundle, _ = default_bundle(False)
    if args.images == "real":
        from .real_photos import real_photos

        images = real_photos(CACHE / "real-photos")
    else:
        images = Path(args.images)
    work = CACHE / "scale-out"
    work.mkdir(parents=True, exist_ok=True)
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "random_weights": True,
        "model": "ViT-B/16 architecture, random weights, int8",
    }
    if not args.skip_ray:
        report["ray"] = ray_vs_box(bundle, images, work)
    if not args.skip_milvus:
        report["milvus"] = milvus_fleet(
            bundle, args.vectors, work, sorted(p for p in images.iterdir() if p.is_file())[0]
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{report['date']}-scale-out.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
