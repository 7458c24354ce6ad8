"""Benchmarks: model throughput per provider x precision x batch, end-to-end indexing, vector index.

Timings are medians over alternating rounds with their spread, on this machine, in this process.
The default bundle is ViT-B/16 with RANDOM weights (speed does not depend on weight values); the
report says so. The original torch + chromadb pipeline runs side by side from its own cached virtualenv (compare.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from .ceiling import K, M, N
from .common import CACHE, HERE, default_bundle, machine
from .decoding import profile as decode_profile


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def gpu_memory_mb() -> float | None:
    """GPU memory in use, from nvidia-smi where there is one (None elsewhere)."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True
    )
    try:
        return float(out.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def run_folder(out: Path, quick: bool) -> Path:
    """A folder of its own for one run (two runs on one day never overwrite each other), holding `run.json`: the
    commit, the command line and the machine, beside the report's JSON and Markdown."""
    started = time.strftime("%Y-%m-%d-%H%M%S")
    folder = out / f"{started}-{socket.gethostname()}{'-quick' if quick else ''}"
    folder.mkdir(parents=True, exist_ok=False)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=HERE, capture_output=True, text=True)
    run = {
        "commit": commit.stdout.strip() or None,
        "uncommitted_changes": bool(dirty.stdout.strip()),
        "command": [sys.executable, "-m", "benchmarks", *sys.argv[1:]],
        "machine": machine(),
    }
    (folder / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    return folder


def generate_images(directory: Path, count: int, quick: bool) -> Path:
    """Camera-like JPEGs from 1 to 12 MP (fixed seed), made once."""
    from PIL import Image

    from edge_search.export.synthetic import photo_like

    directory.mkdir(parents=True, exist_ok=True)
    sizes = [(1152, 864), (2048, 1536), (3264, 2448), (4000, 3000)] if not quick else [(1152, 864), (1600, 1200)]
    for i in range(count):
        path = directory / f"img{i:04d}.jpg"
        if not path.exists():
            w, h = sizes[i % len(sizes)]
            small = photo_like(4242 + i, w // 4, h // 4).resize((w, h), Image.BICUBIC)
            noise = np.random.default_rng(i).integers(-6, 7, (h, w, 3))
            Image.fromarray((np.asarray(small, dtype=np.int16) + noise).clip(0, 255).astype(np.uint8)).save(
                path, quality=90
            )
    return directory


def model_throughput(bundle_dir: Path, batches: list[int], rounds: int) -> list[dict]:
    """Images/s per provider, precision and batch. On the CPU the precisions take turns within each round,
    so their ratios (int8 vs fp32) are not skewed by the machine speeding up or slowing down."""
    from edge_search.runtime.model.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    h, w = bundle.manifest.preprocess.input_hw()
    rows = []
    import onnxruntime as ort

    devices = ["cuda", "cpu"] if "CUDAExecutionProvider" in ort.get_available_providers() else ["cpu"]
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        rows.append({"provider": "TensorRT", "status": "not run: this onnxruntime has no TensorRT provider"})
    if "cuda" not in devices:
        rows.append({"provider": "CUDA", "status": "not run: this onnxruntime has no CUDA provider"})
    for device in devices:
        # On the CPU the engines and precisions take turns (fair ratios); on a GPU one at a time, so that each
        # row's GPU memory is that precision's alone.
        if device == "cpu":
            groups = [[("cpu", p) for p in bundle.precisions] + [("openvino", p) for p in openvino_precisions(bundle)]]
        else:
            groups = [[(device, p)] for p in bundle.precisions if p != "int8-static"]
        for group in groups:
            rows += _throughput_rows(bundle, group, batches, rounds, h, w)
    return rows


def openvino_precisions(bundle) -> list[str]:
    """The bundle's graphs OpenVINO runs, where OpenVINO is installed (its own int8 first)."""
    from edge_search.runtime.model.openvino_session import openvino_installed

    if not openvino_installed():
        return []
    return [p for p in ("int8-static", "fp32") if p in bundle.precisions]


def _throughput_rows(
    bundle, engines: list[tuple[str, str]], batches: list[int], rounds: int, h: int, w: int
) -> list[dict]:
    """The (device, precision) sessions open together, run in turn within each round."""
    from edge_search.runtime.errors import EdgeSearchError
    from edge_search.runtime.model.session import open_session

    rows: list[dict] = []
    sessions: dict[tuple[str, str], Any] = {}
    grown: dict[tuple[str, str], float] = {}
    for engine in engines:
        device, precision = engine
        baseline_rss = rss_mb()
        try:
            sessions[engine], _ = open_session(bundle, device=device, precision=precision)
        except EdgeSearchError as exc:
            rows.append({"provider": device.upper(), "precision": precision, "status": f"not run: {str(exc)[:160]}"})
            continue
        sessions[engine].run(np.zeros((1, 3, h, w), dtype=np.float32))
        grown[engine] = round(rss_mb() - baseline_rss, 1)  # the session and its first run's buffers
    for batch in batches:
        pixels = np.random.default_rng(0).normal(size=(batch, 3, h, w)).astype(np.float32)
        latencies: dict[tuple[str, str], list[float]] = {engine: [] for engine in sessions}
        for session in sessions.values():
            session.run(pixels)
        for _ in range(rounds):
            for engine, session in sessions.items():
                started = time.perf_counter()
                session.run(pixels)
                latencies[engine].append(time.perf_counter() - started)
        base = latencies.get(("cpu", "fp32"))
        for engine, session in sessions.items():
            times = latencies[engine]
            rows.append(
                {
                    "provider": session.provider,
                    "precision": engine[1],
                    "batch": batch,
                    "status": "ok",
                    "gpu_memory_mb": gpu_memory_mb() if session.device == "cuda" else None,
                    "images_per_s": round(batch / statistics.median(times), 2),
                    "x_onnxruntime_cpu_fp32": round(statistics.median(base) / statistics.median(times), 2)
                    if base
                    else None,
                    "p50_ms": round(1000 * statistics.median(times), 1),
                    "p95_ms": round(1000 * float(np.percentile(times, 95)), 1),
                    "session_rss_mb": grown[engine],
                }
            )
    return rows


COMPILE_ONCE = """
import sys, time
from pathlib import Path
from edge_search.runtime.model.openvino_session import compile_graph
from edge_search.runtime.options import OpenVinoOptions
started = time.perf_counter()
compile_graph(Path(sys.argv[1]), OpenVinoOptions(cache=sys.argv[2] == "cache"), None)
print(time.perf_counter() - started)
"""


def openvino_compile(bundle_dir: Path, rounds: int = 3) -> dict:
    """Seconds to open an OpenVINO session on the int8-static graph in a fresh process: compiled from the
    graph (an empty cache), and loaded from the cache the first compile wrote. Medians over `rounds`."""
    import subprocess
    import sys
    import tempfile

    from edge_search.runtime.model.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    if "int8-static" not in openvino_precisions(bundle):
        return {}
    path = str(bundle.model_path("int8-static"))
    first, cached = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "XDG_CACHE_HOME": cache}

            def once(env=env) -> float:
                command = [sys.executable, "-c", COMPILE_ONCE, path, "cache"]
                return float(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)

            first.append(once())
            cached.append(once())
    return {
        "first_compile_s": round(statistics.median(first), 3),
        "cached_compile_s": round(statistics.median(cached), 3),
    }


def add_fractions_of_ceiling(rows: list[dict], limits: dict, bundle_dir: Path) -> None:
    """CPU rows of ViT-B/16 get images/s as a fraction of the matching ceiling."""
    from edge_search.runtime.model.bundle import Bundle

    from .ceiling import VIT_B16_GFLOP, fraction_of_ceiling

    if not limits or not _is_vit_b16(Bundle.load(bundle_dir)):
        return
    for row in rows:
        if row.get("status") == "ok" and row["provider"] == "CPUExecutionProvider":
            row["fraction_of_ceiling"] = fraction_of_ceiling(
                row["images_per_s"], row["precision"], limits, VIT_B16_GFLOP
            )


def int8_over_fp32(rows: list[dict]) -> dict[int, float]:
    """int8 images/s / fp32 images/s per batch on the CPU, both from the same alternating rounds."""
    cpu = {(r["precision"], r["batch"]): r["images_per_s"] for r in rows if r.get("provider") == "CPUExecutionProvider"}
    return {
        batch: round(cpu[("int8", batch)] / cpu[("fp32", batch)], 2)
        for (precision, batch) in cpu
        if precision == "int8" and ("fp32", batch) in cpu
    }


def _is_vit_b16(bundle) -> bool:
    return bundle.manifest.embedding_dim == 768 and bundle.manifest.preprocess.input_hw() == (224, 224)


def end_to_end(bundle_dir: Path, images: Path, precisions: list[str], workdir: Path) -> list[dict]:
    import shutil

    from edge_search.runtime.jobs.indexer import run_index
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.model.embedder import Embedder
    from edge_search.runtime.model.preprocess import Preprocessor
    from edge_search.runtime.model.session import open_session
    from edge_search.runtime.store.generations import IndexWriter

    bundle = Bundle.load(bundle_dir)
    rows = []
    for precision in precisions:
        session, _ = open_session(bundle, device="cpu", precision=precision)
        embedder = Embedder(session, Preprocessor.from_manifest(bundle.manifest), batch_size=8)
        index_dir = workdir / f"index-{precision}"
        shutil.rmtree(index_dir, ignore_errors=True)
        with IndexWriter(index_dir, bundle, precision=precision) as writer:
            summary = run_index(writer, embedder, [images])
        rows.append(
            {
                "pipeline": "edge-search index",
                "precision": precision,
                "provider": session.provider,
                "images": summary.count,
                "seconds": round(summary.seconds, 2),
                "images_per_s": round(summary.count / summary.seconds, 2),
            }
        )
    return rows


def vector_index(sizes: list[int], queries: int = 200) -> list[dict]:
    import onnxruntime  # noqa: F401  (before usearch, see runtime/vector_index.py)

    from edge_search.export.synthetic import clustered_embeddings
    from edge_search.runtime.store import vector_index as vi

    rows = []
    for n in sizes:
        data = clustered_embeddings(n + queries, 768, max(n // 100, 10), seed=n)
        base, probe = data[:n], data[n:]
        truth = np.argsort(-(probe @ base.T), axis=1)[:, :10]
        for dtype in ("f32", "f16", "i8"):
            index = vi.IndexSettings(dim=768, dtype=dtype).new_index()
            started = time.perf_counter()
            index.add(np.arange(n, dtype=np.uint64), base, threads=len(os.sched_getaffinity(0)))
            build = time.perf_counter() - started
            for exact in (False, True):
                started = time.perf_counter()
                found = [index.search(q, 10, exact=exact).keys for q in probe]
                seconds = time.perf_counter() - started
                recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)]))
                rows.append(
                    {
                        "vectors": n,
                        "dtype": dtype,
                        "search": "exact" if exact else "hnsw",
                        "build_s": round(build, 2),
                        "queries_per_s": round(len(probe) / seconds, 1),
                        "recall_at_10": round(recall, 4),
                        "memory_mb": round(index.memory_usage / 2**20, 1),
                    }
                )
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"# edge-search benchmarks — {report['date']}",
        "",
        f"Machine: {report['machine']['cpu']} "
        f"(flags: {', '.join(report['machine'].get('cpu_flags', [])) or 'none of note'}), "
        f"{report['machine']['cores']} cores, {report['machine']['memory_gb']} GB; onnxruntime {report['machine']['onnxruntime']}. "
        f"Model: {report['model']} ({'RANDOM weights — speed only' if report['random_weights'] else 'trained weights'}).",
        "",
    ]
    if report.get("cpu_ceilings"):
        c = report["cpu_ceilings"]
        lines += [
            f"CPU ceilings through onnxruntime ({report['machine']['cores']} threads, a {'x'.join(map(str, (M, K, N)))} matmul): "
            f"fp32 MatMul {c['fp32_gflops']} GFLOP/s, int8 MatMulInteger {c['int8_gops']} GOP/s. "
            "`fraction_of_ceiling` = images/s x 35.2 GFLOP (ViT-B/16) / the matching ceiling "
            "(each ceiling measured before and after the graphs; the higher kept).",
            "",
        ]
    if report.get("int8_over_fp32"):
        ratios = ", ".join(f"batch {batch}: {ratio}×" for batch, ratio in report["int8_over_fp32"].items())
        lines += [f"int8 vs fp32 on the CPU (same alternating rounds): {ratios}.", ""]
    if report.get("openvino_compile"):
        c = report["openvino_compile"]
        lines += [
            f"OpenVINO session on the int8-static graph, fresh process: compiled {c['first_compile_s']} s, "
            f"from its cache {c['cached_compile_s']} s.",
            "",
        ]
    if report.get("decoding"):
        from .decoding import markdown as decoding_table

        lines += [
            "## Decoding and preprocessing, per format (CPU ms per image)",
            "",
            *decoding_table(report["decoding"]),
            "",
        ]
    for title, rows in (
        ("Model throughput", report["model_throughput"]),
        ("End-to-end indexing", report["end_to_end"]),
        ("Vector index", report["vector_index"]),
    ):
        if not rows:
            continue
        lines += [f"## {title}", ""]
        keys = list(dict.fromkeys(k for row in rows for k in row))
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
        lines.append("")
    service = report.get("service")
    if service and "warm_1_client" in service:
        lines += [
            "## The warm service against a cold CLI query",
            "",
            f"Same index and image, {service['precision']} on the CPU; service resident memory {service['service_rss_mb']} MB.",
            "",
            "| measure | p50 ms | p95 ms |",
            "|---|---|---|",
        ]
        for key, label in (
            ("cold_cli_query", "`edge-search query` (new process)"),
            ("warm_1_client", "`POST /api/query`, 1 client"),
            ("warm_8_clients", "`POST /api/query`, 8 concurrent clients"),
        ):
            lines.append(f"| {label} | {service[key]['p50_ms']} | {service[key]['p95_ms']} |")
        lines += ["", f"Warm (1 client) is {service['speedup_p50']}x faster than cold at the median.", ""]
        fresh = service.get("new_photo_to_searchable", {})
        if "median_s" in fresh:
            lines += [
                f"A photo copied into a watched folder was found first by a query with it after {fresh['median_s']} s at "
                f"the median (max {fresh['max_s']} s; each: {fresh['seconds']}); the watching service held "
                f"{fresh['service_rss_mb']} MB.",
                "",
            ]
    side = report.get("side_by_side")
    for side in [report.get("side_by_side"), *report.get("side_by_side_more", [])]:
        lines += _side_by_side_table(side)
    if report.get("quality"):
        from .quality import markdown as quality_tables

        lines += ["## Search quality on trained weights", "", quality_tables(report["quality"]), ""]
    if report.get("dupes"):
        from .dupes import markdown as dupes_table

        lines += ["## Duplicates you can delete (trained weights)", "", dupes_table(report["dupes"]), ""]
    return "\n".join(lines)


ENGINE_NAMES = {"CPUExecutionProvider": "onnxruntime CPU", "CUDAExecutionProvider": "onnxruntime CUDA"}


def engines(report: dict) -> str:
    """Model throughput per engine x graph x batch, as a ratio to onnxruntime CPU fp32 in the same rounds (the
    table docs/benchmarks.md shows; `tools/benchmark_tables.py` renders it from a report)."""
    rows = [r for r in report["model_throughput"] if r.get("status") == "ok" and r.get("x_onnxruntime_cpu_fp32")]
    batches = sorted({r["batch"] for r in rows})
    engines_seen = list(dict.fromkeys((r["provider"], r["precision"]) for r in rows))
    ratio = {(r["provider"], r["precision"], r["batch"]): r["x_onnxruntime_cpu_fp32"] for r in rows}
    lines = [
        "| engine | graph | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|---|" + "---|" * len(batches),
    ]
    for provider, precision in engines_seen:
        cells = [f"{ratio[(provider, precision, b)]:.2f}" if (provider, precision, b) in ratio else "" for b in batches]
        lines.append(f"| {ENGINE_NAMES.get(provider, provider)} | {precision} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def side_by_side(report: dict) -> str:
    """Every side-by-side with the original pipeline in a report, one table each (without their headings)."""
    tables = [_side_by_side_table(side) for side in [report.get("side_by_side"), *report.get("side_by_side_more", [])]]
    return "\n".join(line for table in tables for line in table[2:] if table)


def _on(measure: dict) -> str:
    """' (on OpenVINO CPU int8-static)': the engine edge-search ran, where the run recorded it."""
    return f" (on {measure['edge_engine']})" if measure.get("edge_engine") else ""


def _indexed_query_rows(cq: dict | None) -> list[str]:
    """The cold query of a photo the index holds (runs from 2026-12-05 on; earlier ones queried such a photo
    through the model, the only row then)."""
    if not cq:
        return []
    return [
        f"| cold query of an indexed photo, s (on {cq['edge_engine']}) | {cq['edge_s']} | {cq['original_s']} | {cq['speedup']['median']}× faster ({cq['speedup']['min']}-{cq['speedup']['max']}) |",
        f"| its peak RSS, MB | {cq['edge_peak_rss_mb']} | {cq['original_peak_rss_mb']} | {round(cq['edge_peak_rss_mb'] / cq['original_peak_rss_mb'], 2)} |",
    ]


def _side_by_side_table(side: dict | None) -> list[str]:
    lines: list[str] = []
    if side and "indexing" in side:
        ix, cq = side["indexing"], side["cold_query"]
        lines += [
            "## Against the original pipeline (torch fp32 + chromadb)",
            "",
            f"Same {side['images']} images, same weights; edge-search {side['precision']} on {side.get('device', 'cpu')}. Ratios: median (min-max) over alternating runs.",
            "",
            "| measure | edge-search | original | ratio |",
            "|---|---|---|---|",
            f"| indexing, images/s{_on(ix)} | {ix['edge_images_per_s']} | {ix['original_images_per_s']} | {ix['speedup']['median']}× ({ix['speedup']['min']}-{ix['speedup']['max']}) |",
            f"| cold query, s{_on(cq)} | {cq['edge_s']} | {cq['original_s']} | {cq['speedup']['median']}× faster ({cq['speedup']['min']}-{cq['speedup']['max']}) |",
            f"| cold query peak RSS, MB | {cq['edge_peak_rss_mb']} | {cq['original_peak_rss_mb']} | {round(cq['edge_peak_rss_mb'] / cq['original_peak_rss_mb'], 2)} |",
            *_indexed_query_rows(side.get("cold_query_indexed")),
            f"| warm query, ms | {side['warm_query_ms']['edge']} | {side['warm_query_ms']['original']} | {round(side['warm_query_ms']['original'] / side['warm_query_ms']['edge'], 2)}× |",
            "",
        ]
    elif side:
        lines += ["## Against the original pipeline", "", side["status"], ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, few images, small index")
    parser.add_argument("--model", type=Path, help="bundle directory [default: a cached random-weight export]")
    parser.add_argument(
        "--images",
        help="folder of photos, or `real` for Debian's wallpaper photographs "
        "(gathered once, see benchmarks/real_photos.py) [default: generated camera-like JPEGs]",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--sections",
        type=lambda v: set(v.split(",")),
        default={"model", "decode", "e2e", "vectors", "baseline", "serve", "quality", "dupes"},
        help="comma-separated subset of: model,decode,e2e,vectors,baseline,serve,quality,dupes "
        "(quality and dupes: the trained fixture, whatever --model is)",
    )
    parser.add_argument(
        "--plot", action="store_true", help="also write PNG charts (needs the `bench` extra: matplotlib)"
    )
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the original torch + chromadb pipeline (its virtualenv takes a few minutes to build once)",
    )
    parser.add_argument(
        "--edge-engine",
        default="cpu:int8",
        metavar="DEVICE:PRECISION",
        help="what edge-search runs in the side-by-side with the original [default: cpu:int8]; `auto:auto` is what a "
        "user gets (the engine follows the job: see `edge-search info`); with the default, a bundle with an "
        "int8-static graph is also measured on openvino:int8-static",
    )
    args = parser.parse_args()
    device, _, precision = args.edge_engine.partition(":")
    if not device or not precision:
        parser.error(f"--edge-engine takes DEVICE:PRECISION (cpu:int8, auto:auto, ...), not {args.edge_engine!r}")

    from edge_search.runtime.model.bundle import Bundle

    from .ceiling import ceilings

    if args.model:
        bundle_dir = args.model
        manifest = Bundle.load(bundle_dir).manifest
        checkpoint = Path(manifest.model_id) if Path(manifest.model_id).is_dir() else None
    else:
        bundle_dir, checkpoint = default_bundle(args.quick)
        manifest = Bundle.load(bundle_dir).manifest
    if args.images == "real":
        from .real_photos import real_photos

        images = real_photos(CACHE / "real-photos")
    elif args.images:
        images = Path(args.images)
    else:
        images = generate_images(
            CACHE / ("images-quick" if args.quick else "images"), 8 if args.quick else 48, args.quick
        )
    cores = len(os.sched_getaffinity(0))
    limits = ceilings(cores, rounds=3 if args.quick else 20) if "model" in args.sections else {}
    throughput = (
        model_throughput(bundle_dir, [1, 8] if args.quick else [1, 8, 32], 3 if args.quick else 10)
        if "model" in args.sections
        else []
    )
    if limits:  # a ceiling is the best the machine reached: measured again after, the higher of the two kept
        limits = {
            name: max(value, ceilings(cores, rounds=3 if args.quick else 20)[name]) for name, value in limits.items()
        }
        add_fractions_of_ceiling(throughput, limits, bundle_dir)
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "model": manifest.model_id,
        "images": str(images),
        "architecture": manifest.architecture,
        "random_weights": manifest.random_weights or (args.model is None),  # our default bundles are random-weight
        "cpu_ceilings": limits,
        "model_throughput": throughput,
        "int8_over_fp32": int8_over_fp32(throughput),
        "openvino_compile": openvino_compile(bundle_dir) if "model" in args.sections else {},
        "decoding": decode_profile(images) if "decode" in args.sections else [],
        "end_to_end": end_to_end(bundle_dir, images, ["int8"] if args.quick else ["int8", "fp32"], CACHE)
        if "e2e" in args.sections
        else [],
        "vector_index": vector_index([2_000] if args.quick else [10_000, 100_000, 1_000_000])
        if "vectors" in args.sections
        else [],
    }
    if "serve" in args.sections and report["end_to_end"]:
        from .service import new_photo_to_searchable, serve_vs_cold

        files = sorted(p for p in images.iterdir() if p.is_file())
        report["service"] = serve_vs_cold(
            bundle_dir,
            CACHE / "index-int8",
            files[0],
            cold_runs=2 if args.quick else 5,
            warm_requests=8 if args.quick else 24,
        )
        report["service"]["new_photo_to_searchable"] = new_photo_to_searchable(
            bundle_dir, files, CACHE / "watch", seed_count=8 if args.quick else 24, new_count=2 if args.quick else 5
        )
    if "baseline" not in args.sections:
        pass
    elif args.baseline and checkpoint is not None:
        from .compare import side_by_side

        def against_original(engine: str, graph: str) -> dict:
            rounds, query_rounds = (2, 2) if args.quick else (3, 5)
            return side_by_side(
                bundle_dir, checkpoint, images, CACHE, rounds, precision=graph, query_rounds=query_rounds, device=engine
            )

        report["side_by_side"] = against_original(device, precision)
        if args.edge_engine == "cpu:int8" and "int8-static" in openvino_precisions(Bundle.load(bundle_dir)):
            report["side_by_side_more"] = [against_original("openvino", "int8-static")]
    elif args.baseline:
        report["side_by_side"] = {
            "status": "not run: the bundle was not exported from a local checkpoint the original pipeline can load"
        }
    if "quality" in args.sections:
        from .quality import measure as search_quality

        report["quality"] = search_quality(args.quick)
    if "dupes" in args.sections:
        from .dupes import measure as dupes_quality

        report["dupes"] = dupes_quality(args.quick)
    folder = run_folder(args.out, args.quick)
    stem = folder / "report"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"\nwritten: {stem}.json, {stem}.md, {folder / 'run.json'}")
    if args.plot:
        from .plots import write_plots

        for path in write_plots(report, stem):
            print(f"written: {path}")
