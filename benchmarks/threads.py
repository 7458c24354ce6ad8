"""Indexing throughput by how the CPU is shared: decoding threads, the engine's threads, and onnxruntime's
thread-pool spinning (its idle workers busy-wait for the next batch, on cores the decoders need).

Embeds the same real photos through the runtime's `Embedder` (decoding overlapped with inference, batch 8) for
each setting, alternating settings round by round; images/s as the median over rounds, each setting's ratio
to the runtime's default (marked *) in the same run.

    python -m benchmarks.threads [--bundle DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from edge_search.runtime.host import default_threads


@dataclass(frozen=True)
class Setting:
    engine: str  # "onnxruntime int8" or "openvino int8-static"
    decoders: int
    engine_threads: int
    spinning: bool = True  # onnxruntime only

    @property
    def label(self) -> str:
        spin = "" if self.engine.startswith("openvino") else (", spinning" if self.spinning else ", no spinning")
        return f"{self.engine}: {self.decoders} decoding, {self.engine_threads} engine{spin}"


def settings(cores: int, with_openvino: bool) -> list[Setting]:
    counts = sorted({1, cores})
    rows = [Setting("onnxruntime int8", d, e, s) for d in counts for e in counts for s in (True, False)]
    if with_openvino:
        rows += [Setting("openvino int8-static", d, e) for d in counts for e in counts]
    return rows


def open_embedder(bundle: Path, setting: Setting):
    import onnxruntime as ort

    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.model.embedder import Embedder
    from edge_search.runtime.model.preprocess import Preprocessor
    from edge_search.runtime.model.session import open_session

    def factory(path, sess_options, providers):
        if not setting.spinning:
            sess_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(path, sess_options=sess_options, providers=providers)

    loaded = Bundle.load(bundle)
    device, precision = setting.engine.split()
    device = "cpu" if device == "onnxruntime" else device
    session, _ = open_session(
        loaded, device=device, precision=precision, threads=setting.engine_threads, session_factory=factory
    )
    preprocessor = Preprocessor.for_options(loaded.manifest, threads=setting.decoders)
    return Embedder(session, preprocessor, batch_size=8, workers=setting.decoders)


def measure(bundle: Path, images: list[Path], rounds: int = 3) -> dict:
    from edge_search.runtime.model.openvino_session import openvino_installed

    has_static = "int8-static" in json.loads((bundle / "manifest.json").read_text())["files"]
    cores = default_threads()
    chosen = settings(cores, has_static and openvino_installed())
    embedders = {s: open_embedder(bundle, s) for s in chosen}
    for embedder in embedders.values():  # warm up: first runs allocate
        list(embedder.embed(images[:8]))
    seconds: dict[Setting, list[float]] = {s: [] for s in chosen}
    for _ in range(rounds):
        for setting, embedder in embedders.items():
            started = time.perf_counter()
            results = list(embedder.embed(images))
            seconds[setting].append(time.perf_counter() - started)
            assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    default = Setting("onnxruntime int8", cores, cores, True)
    rows = []
    for setting in chosen:
        rate = len(images) / statistics.median(seconds[setting])
        rows.append({"setting": setting.label, "images_per_s": round(rate, 2), "default": setting == default})
    base = next(r["images_per_s"] for r in rows if r["default"])
    for row in rows:
        row["vs_default"] = round(row["images_per_s"] / base, 2)
    return {"photos": len(images), "cores": cores, "rounds": rounds, "rows": rows}


def markdown(report: dict) -> str:
    lines = ["| setting | images/s | vs default |", "|---|---|---|"]
    for row in report["rows"]:
        mark = " *" if row["default"] else ""
        lines.append(f"| {row['setting']}{mark} | {row['images_per_s']} | {row['vs_default']}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.threads", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="[default: ViT-B/16 random weights, benchmarks/.cache]")
    parser.add_argument("--images", type=Path, help="folder of photos [default: Debian's wallpapers]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=48, help="photos, spread over the folder [default: 48]")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from .common import CACHE, default_bundle, machine
    from .real_photos import real_photos

    folder = args.images or real_photos(CACHE / "real-photos")
    images = sorted(p for p in folder.iterdir() if p.is_file())
    images = images[:: max(1, len(images) // args.limit)][: args.limit]
    report = {
        "machine": machine(),
        "cpus": os.cpu_count(),
        **measure(args.bundle or default_bundle(False)[0], images, args.rounds),
    }
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
