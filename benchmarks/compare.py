"""edge-search against the original pipeline, side by side on the same images, weights and machine.

Runs alternate (A B A B ...) and each ratio is reported as the median with its min-max spread.
The original pipeline runs in a cached virtualenv of its own (torch + transformers + chromadb).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline" / "original_pipeline.py"


def baseline_python() -> Path:
    """The baseline's interpreter, creating its virtualenv once per machine (torch==2.13.0 first: a local
    CPU wheel here) in the user cache, so that fresh checkouts and CI runs reuse it."""
    import platformdirs

    venv = platformdirs.user_cache_path("edge-search") / "benchmarks" / "baseline-venv"
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if marker.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + [f"transformers=={md.version('transformers')}", "chromadb", "pillow"], check=True)
    marker.touch()
    return python


def run_measured(command: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one subprocess.

    The peak is the child's own VmHWM, polled: rusage's ru_maxrss would include this (large) parent's
    RSS, which a forked child inherits.
    """
    import tempfile
    import threading

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=errors, env=env, text=True)
        peak = [0.0]

        def watch() -> None:
            while proc.poll() is None:
                try:
                    with open(f"/proc/{proc.pid}/status") as status:
                        for line in status:
                            if line.startswith("VmHWM:"):
                                peak[0] = max(peak[0], int(line.split()[1]) / 1024)
                except OSError:
                    pass
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        proc.wait()
        seconds = time.perf_counter() - started
        watcher.join()
        out.seek(0)
        errors.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:4])}… exited {proc.returncode}: {errors.read()[-1500:]}")
        return seconds, peak[0], out.read()


def edge_env(bundle: Path, index: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_SEARCH_")}
    env.update(EDGE_SEARCH_MODEL=str(bundle), EDGE_SEARCH_INDEX=str(index))
    return env


def spread(ratios: list[float]) -> dict:
    return {
        "median": round(statistics.median(ratios), 2),
        "min": round(min(ratios), 2),
        "max": round(max(ratios), 2),
        "runs": len(ratios),
    }


def side_by_side(
    bundle: Path,
    checkpoint: Path,
    images: Path,
    workdir: Path,
    rounds: int,
    precision: str = "int8",
    query_rounds: int = 5,
    device: str = "cpu",
) -> dict:
    """Indexing `rounds` times each (alternating, fresh indexes), then `query_rounds` alternating cold
    queries on the last indexes (a cold query varies ±20% run to run on a small VM: more samples)."""
    python = baseline_python()
    edge = [sys.executable, "-m", "edge_search.runtime"]
    count = sum(1 for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    query_image = sorted(images.iterdir())[0]
    index_rows = []
    for round_ in range(rounds):
        edge_index, chroma = workdir / "ab-edge-index", workdir / "ab-chroma"
        shutil.rmtree(edge_index, ignore_errors=True)
        shutil.rmtree(chroma, ignore_errors=True)
        a, _, indexed = run_measured(
            edge + ["index", str(images), "--device", device, "--precision", precision, "--json"],
            edge_env(bundle, edge_index),
        )
        b, _, _ = run_measured([str(python), str(BASELINE), "index", str(checkpoint), str(chroma), str(images)])
        index_rows.append({"round": round_, "edge_s": a, "original_s": b})
    # two cold queries: a photo the index holds (answered from its stored embedding, no model) and a new one (a
    # mirrored copy of it, outside the indexed folder: the model runs), each against the original pipeline
    new_image = _new_photo(query_image, workdir)
    query_rows = cold_queries(bundle, checkpoint, edge_index, chroma, new_image, query_rounds, precision, device)
    indexed_rows = cold_queries(bundle, checkpoint, edge_index, chroma, query_image, query_rounds, precision, device)
    _, _, warm_out = run_measured(
        [
            str(python),
            str(BASELINE),
            "query",
            str(checkpoint),
            str(workdir / "ab-chroma"),
            str(query_image),
            "--warm",
            "10",
        ]
    )
    return {
        "images": count,
        "indexing": {
            "edge_images_per_s": round(count / statistics.median(r["edge_s"] for r in index_rows), 2),
            "original_images_per_s": round(count / statistics.median(r["original_s"] for r in index_rows), 2),
            "speedup": spread([r["original_s"] / r["edge_s"] for r in index_rows]),
            "note": "whole process wall time, start-up and model load included, fresh index each run",
            "edge_engine": _engine(indexed),
        },
        "cold_query": _cold_summary(query_rows, "a new photo (not in the index)"),
        "cold_query_indexed": _cold_summary(indexed_rows, "a photo of the index (its stored embedding)"),
        "warm_query_ms": {
            "original": round(json.loads(warm_out)["warm_ms"], 1),
            "edge": round(warm_edge_ms(bundle, workdir / "ab-edge-index", query_image, precision, device), 1),
        },
        "precision": precision,
        "device": device,
    }


def _cold_summary(rows: list[dict], what: str) -> dict:
    return {
        "query": what,
        "edge_s": round(statistics.median(r["edge_s"] for r in rows), 3),
        "original_s": round(statistics.median(r["original_s"] for r in rows), 3),
        "speedup": spread([r["original_s"] / r["edge_s"] for r in rows]),
        "edge_peak_rss_mb": round(statistics.median(r["edge_rss_mb"] for r in rows), 1),
        "original_peak_rss_mb": round(statistics.median(r["original_rss_mb"] for r in rows), 1),
        "edge_engine": rows[-1]["edge_engine"],
    }


def _new_photo(photo: Path, workdir: Path) -> Path:
    """A photo neither index holds: `photo` mirrored, saved outside the indexed folder."""
    from benchmarks.edits import save_edit

    folder = workdir / "ab-new-photo"
    folder.mkdir(parents=True, exist_ok=True)
    return save_edit(photo, "flip", folder)


def cold_queries(
    bundle: Path,
    checkpoint: Path,
    edge_index: Path,
    chroma: Path,
    image: Path,
    rounds: int,
    precision: str = "int8",
    device: str = "cpu",
) -> list[dict]:
    """Alternating cold queries (a new process each) against indexes both sides built already."""
    edge = [sys.executable, "-m", "edge_search.runtime", "query", str(image), "--json"]
    edge += ["--device", device, "--precision", precision]
    rows = []
    for round_ in range(rounds):
        qa, ra, answered = run_measured(edge, edge_env(bundle, edge_index))
        qb, rb, _ = run_measured(
            [str(baseline_python()), str(BASELINE), "query", str(checkpoint), str(chroma), str(image)]
        )
        rows.append(
            {
                "round": round_,
                "edge_s": qa,
                "edge_rss_mb": ra,
                "original_s": qb,
                "original_rss_mb": rb,
                "edge_engine": _engine(answered),
            }
        )
    return rows


def _engine(output: str) -> str:
    """'CPUExecutionProvider int8', 'OpenVINO CPU int8-static': what an `index` or `query --json` ran on."""
    try:
        answer = json.loads(output)
    except ValueError:
        return "unknown"
    return f"{answer.get('provider')} {answer.get('precision')}"


def main() -> None:
    """`python -m benchmarks.compare --cold-query-rounds N`: only the cold queries, on the indexes the last
    side-by-side run left in benchmarks/.cache (real photos or synthetic, whichever ran last)."""
    import argparse

    from .common import CACHE, default_bundle, machine

    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=main.__doc__)
    parser.add_argument("--cold-query-rounds", type=int, default=7)
    parser.add_argument("--image", type=Path, help="query image [default: the first of benchmarks/.cache/real-photos]")
    args = parser.parse_args()
    bundle, checkpoint = default_bundle(False)
    image = args.image or sorted((CACHE / "real-photos").iterdir())[0]
    rows = cold_queries(bundle, checkpoint, CACHE / "ab-edge-index", CACHE / "ab-chroma", image, args.cold_query_rounds)
    ratios = spread([r["original_s"] / r["edge_s"] for r in rows])
    print(
        json.dumps(
            {
                "machine": machine(),
                "image": str(image),
                "rounds": rows,
                "speedup": ratios,
                "edge_s": round(statistics.median(r["edge_s"] for r in rows), 3),
                "original_s": round(statistics.median(r["original_s"] for r in rows), 3),
            },
            indent=2,
        )
    )


def warm_edge_ms(
    bundle: Path, index: Path, image: Path, precision: str, device: str = "cpu", repeats: int = 10
) -> float:
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.model.embedder import Embedder
    from edge_search.runtime.model.preprocess import Preprocessor
    from edge_search.runtime.model.session import open_session
    from edge_search.runtime.store.generations import IndexReader

    loaded = Bundle.load(bundle)
    session, _ = open_session(loaded, device=device, precision=precision)
    embedder = Embedder(session, Preprocessor.from_manifest(loaded.manifest), batch_size=1)
    reader = IndexReader(index)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        reader.search(embedder.embed_pixels(embedder.preprocessor.load(image)[None])[0], 10)
        times.append(time.perf_counter() - started)
    reader.close()
    return statistics.median(times[1:]) * 1000


if __name__ == "__main__":
    main()
