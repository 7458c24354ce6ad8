"""The GPU acceptance run: one command on a machine with an NVIDIA GPU and this checkout, under 8 minutes.

    python -m benchmarks.gpu_check --bundle BUNDLE [--photos DIR] [--wheels DIR] [--out benchmarks/results]

1. Installs what it needs where it is missing: onnxruntime-gpu (and TensorRT's wheels) from `--wheels DIR`
   (wheels, or a wheel split into `NAME.whl.part-aa`, `-ab`, ... for transfer), into a folder of its own
   (`pip install --no-deps --target`), then runs itself again with that folder on the path.
2. Parity of CUDA fp16, CUDA fp32 and TensorRT (fp16 engine) against onnxruntime CPU fp32 on real photos.
3. Images/s at batch 1 / 8 / 32 / 64 with the peak GPU memory (nvidia-smi), per provider and precision.
4. What `auto` chooses, and why.
5. An end-to-end `edge-search index` of the photos with `--device auto`: images/s.
Results: `report.json` and `report.md` in a run folder under `--out`. Without a GPU (`--dry-run`, or no
nvidia-smi) it writes the plan and says so; that part is what the CPU-only tests run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
REAL_PHOTOS = HERE / "benchmarks" / ".cache" / "real-photos"
BATCHES = (1, 8, 32, 64)
ENGINES = (("cuda", "fp16"), ("cuda", "fp32"), ("tensorrt", "fp32"))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="an exported bundle (fp32 and fp16 graphs)")
    parser.add_argument("--photos", type=Path, default=REAL_PHOTOS, help="real photos (default: Debian's)")
    parser.add_argument("--wheels", type=Path, help="onnxruntime-gpu / TensorRT wheels (or .whl.part-* pieces)")
    parser.add_argument("--out", type=Path, default=HERE / "benchmarks" / "results")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs per batch size")
    parser.add_argument("--dry-run", action="store_true", help="plan and report only (no GPU needed)")
    args = parser.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        parser.error(f"--batches takes whole numbers separated by commas, not {args.batches!r}")
    return args


def gpu_name() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    done = subprocess.run(
        [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True
    )
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def cuda_ready() -> bool:
    """onnxruntime-gpu importable and its CUDA provider library loadable (not merely listed)."""
    try:
        import onnxruntime as ort

        from edge_search.runtime.model.session import provider_library_problem
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers() and provider_library_problem(ort, "cuda") is None


def install_plan(wheels: Path | None, target: Path, have_cuda: bool) -> list[list[str]]:
    """The commands that bring onnxruntime-gpu (and TensorRT, when its wheels are there) into `target`: split
    wheels joined first, then one `pip install --no-deps --target`. Empty when CUDA is ready already."""
    if have_cuda or wheels is None:
        return []
    commands: list[list[str]] = []
    pieces: dict[str, list[Path]] = {}
    for part in sorted(wheels.glob("*.whl.part-*")):
        pieces.setdefault(part.name.split(".part-")[0], []).append(part)
    for name, parts in sorted(pieces.items()):
        commands.append(["sh", "-c", f"cat {' '.join(map(str, parts))} > {wheels / name}"])
    names = sorted({*(p.name for p in wheels.glob("*.whl")), *pieces})
    if names:
        commands.append(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--target",
                str(target),
                *(str(wheels / n) for n in names),
            ]
        )
    return commands


class PeakGpuMemory:
    """The highest `memory.used` nvidia-smi reports while the block runs, minus what was used before it (MB)."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s, self.peak, self.before = interval_s, 0.0, 0.0
        self._stop = threading.Event()

    @staticmethod
    def used() -> float:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True
        )
        return float(done.stdout.split()[0]) if done.returncode == 0 and done.stdout.split() else 0.0

    def __enter__(self) -> PeakGpuMemory:
        self.before = self.peak = self.used()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.used())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def grown_mb(self) -> float:
        return round(self.peak - self.before, 1)


def measure(args: argparse.Namespace) -> dict:
    """Steps 2-5 on this machine's GPU."""
    import numpy as np

    from edge_search.runtime.errors import EdgeSearchError
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.model.preprocess import Preprocessor
    from edge_search.runtime.model.session import open_session

    bundle = Bundle.load(args.bundle)
    preprocessor = Preprocessor.from_manifest(bundle.manifest)
    photos = sorted(p for p in args.photos.iterdir() if p.is_file())[:64]
    pixels = np.stack([preprocessor.load(p) for p in photos])
    cpu, _ = open_session(bundle, device="cpu", precision="fp32")
    reference = _unit(cpu.run(pixels))
    report: dict = {"photos": len(photos), "parity": [], "throughput": []}
    for device, precision in ENGINES:
        started = time.perf_counter()
        try:
            session, notes = open_session(bundle, device=device, precision=precision)
        except EdgeSearchError as exc:
            report["parity"].append({"device": device, "precision": precision, "status": f"not run: {exc}"[:300]})
            continue
        opened_s = time.perf_counter() - started
        cosine = (_unit(session.run(pixels)) * reference).sum(axis=1)
        report["parity"].append(
            {
                "device": device,
                "precision": precision,
                "provider": session.provider,
                "status": "ok",
                "open_s": round(opened_s, 2),
                "min_cosine": round(float(cosine.min()), 6),
                "mean_cosine": round(float(cosine.mean()), 6),
                "notes": notes,
            }
        )
        for batch in args.batches:
            batch_pixels = np.resize(pixels, (batch, *pixels.shape[1:]))
            session.run(batch_pixels)  # warm-up: kernels, engine profiles
            with PeakGpuMemory() as memory:
                times = []
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    session.run(batch_pixels)
                    times.append(time.perf_counter() - t)
            report["throughput"].append(
                {
                    "device": device,
                    "precision": precision,
                    "batch": batch,
                    "images_per_s": round(batch / statistics.median(times), 1),
                    "p50_ms": round(1000 * statistics.median(times), 2),
                    "gpu_memory_mb": memory.grown_mb,
                }
            )
        del session
    auto, notes = open_session(bundle)
    report["auto"] = {"device": auto.device, "precision": auto.precision, "why": auto.why, "notes": notes}
    report["end_to_end"] = index_run(args.bundle, args.photos)
    return report


def _unit(vectors):
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def index_run(bundle: Path, photos: Path) -> dict:
    """`edge-search index PHOTOS --device auto` in a fresh process: images/s over the whole process."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [shutil.which("edge-search") or "edge-search", "index", str(photos), "--index", f"{scratch}/index"]
        command += ["--model", str(bundle), "--device", "auto", "--json"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"status": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    result = json.loads(done.stdout)
    return {
        "status": "ok",
        "images": result["count"],
        "seconds": round(seconds, 1),
        "images_per_s": round(result["count"] / seconds, 1),
        "provider": result["provider"],
        "precision": result["precision"],
    }


def markdown(report: dict) -> str:
    lines = [f"# GPU acceptance run — {report['date']}", "", f"GPU: {report['gpu'] or 'none'}. {report['status']}", ""]
    if report.get("install_plan"):
        lines += ["Installed first:", "", *(f"    {' '.join(c)}" for c in report["install_plan"]), ""]
    parity = [
        [
            p["device"],
            p["precision"],
            p["status"],
            p.get("open_s", ""),
            p.get("min_cosine", ""),
            p.get("mean_cosine", ""),
        ]
        for p in report.get("parity", [])
    ]
    lines += _table(
        "Parity against onnxruntime CPU fp32", "engine | graph | status | open s | min cos | mean cos", parity
    )
    throughput = [
        [t["device"], t["precision"], t["batch"], t["images_per_s"], t["p50_ms"], t["gpu_memory_mb"]]
        for t in report.get("throughput", [])
    ]
    lines += _table("Throughput", "engine | graph | batch | images/s | p50 ms | GPU memory MB", throughput)
    if report.get("auto"):
        lines += [
            f"`auto` chose {report['auto']['device']} {report['auto']['precision']}: {report['auto']['why']}.",
            "",
        ]
    if report.get("end_to_end"):
        e2e = report["end_to_end"]
        lines.append(
            f"`edge-search index` of {e2e['images']} photos with `--device auto`: {e2e['images_per_s']} images/s "
            f"({e2e['seconds']} s, whole process, {e2e['provider']} {e2e['precision']})."
            if e2e.get("status") == "ok"
            else f"`edge-search index`: {e2e['status']}"
        )
    return "\n".join(lines) + "\n"


def _table(title: str, header: str, rows: list[list]) -> list[str]:
    if not rows:
        return []
    columns = header.count("|") + 1
    return [
        f"## {title}",
        "",
        f"| {header} |",
        "|" + "---|" * columns,
        *("| " + " | ".join(map(str, r)) + " |" for r in rows),
        "",
    ]


def main(argv: list[str] | None = None) -> Path:
    args = parse(argv)
    from benchmarks.run import run_folder

    target = Path(tempfile.gettempdir()) / "edge-search-gpu-check-site"
    gpu = gpu_name()
    plan = install_plan(args.wheels, target, cuda_ready())
    report: dict = {"date": time.strftime("%Y-%m-%d"), "gpu": gpu, "install_plan": plan}
    if args.dry_run or gpu is None:
        report["status"] = "Dry run: nothing measured." if args.dry_run else "No NVIDIA GPU here (no nvidia-smi)."
    elif plan and not os.environ.get("EDGE_SEARCH_GPU_CHECK_INSTALLED"):
        for command in plan:
            subprocess.run(command, check=True)
        env = {**os.environ, "EDGE_SEARCH_GPU_CHECK_INSTALLED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.gpu_check", *(argv or sys.argv[1:])], env)
    else:
        report["status"] = "Measured."
        report.update(measure(args))
    folder = run_folder(args.out, quick=args.dry_run)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(markdown(report))
    print(markdown(report))
    print(f"written to {folder}", file=sys.stderr)
    return folder


if __name__ == "__main__":
    main()
