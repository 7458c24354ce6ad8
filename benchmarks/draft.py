"""JPEG DCT-domain downscaling (Pillow's draft) against full decoding, on real photos: what each setting costs
in CPU time per photo (decode + preprocess, the runtime's own path) and what it changes in the embeddings
(cosine to the full decode's, fp32 on the CPU), per model. The runtime's default is the row marked *.

    python -m benchmarks.draft [--bundle DIR ...]   # default: the trained fixture (if built) and ViT-B/16 random

A draft factor f decodes a JPEG at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both sides at least f
times the model's resize target (f = 2: at least 448 px for 224).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_search.runtime.model.preprocess import DRAFT_FACTOR

# (label, jpeg_draft, draft factor)
SETTINGS = [("full decode", False, DRAFT_FACTOR), ("draft ≥ 2× input", True, 2), ("draft ≥ 1× input", True, 1)]


def measure(images: list[Path], bundles: dict[str, Path], repeats: int = 2) -> dict:
    """Per setting: CPU ms per photo (best of `repeats`); per model: min / mean cosine to the full decode."""
    from edge_search.runtime.model.model import Model
    from edge_search.runtime.options import ModelOptions

    data = [path.read_bytes() for path in images]
    rows = []
    for label, draft, factor in SETTINGS:
        rows.append({"setting": label, "draft": draft, "factor": factor, "default": draft and factor == DRAFT_FACTOR})
    fidelity: dict[str, dict[str, dict[str, float]]] = {}
    for name, bundle in bundles.items():
        model = Model.open(bundle, ModelOptions(device="cpu", precision="fp32", threads=1))
        embedded = {}
        for row in rows:
            preprocessor = replace(model.preprocessor, jpeg_draft=row["draft"], draft_factor=row["factor"])
            timings = []
            for _ in range(repeats):
                started = time.process_time()
                pixels = [preprocessor.load_bytes(blob, str(path)) for blob, path in zip(data, images)]
                timings.append((time.process_time() - started) * 1000 / len(data))
            row.setdefault("cpu_ms", {})[name] = round(min(timings), 1)
            embedded[row["setting"]] = np.stack([model.embedder.embed_pixels(p[None])[0] for p in pixels])
        full = embedded[SETTINGS[0][0]]
        fidelity[name] = {}
        for setting, vectors in embedded.items():
            cos = (full * vectors).sum(axis=1)
            fidelity[name][setting] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
    for row in rows:
        cpu = list(row["cpu_ms"].values())
        row["cpu_ms"] = round(statistics.fmean(cpu), 1)
    base = rows[0]["cpu_ms"]
    for row in rows:
        row["speedup"] = round(base / row["cpu_ms"], 2)
    return {"photos": len(images), "rows": rows, "fidelity": fidelity}


def markdown(report: dict) -> str:
    models = list(report["fidelity"])
    head = "| setting | CPU ms / photo | vs full | " + " | ".join(f"cosine to full, {m} (min / mean)" for m in models)
    lines = [head + " |", "|---" * (3 + len(models)) + "|"]
    for row in report["rows"]:
        mark = " *" if row["default"] else ""
        cells = [
            f"{report['fidelity'][m][row['setting']]['min']:.6f} / {report['fidelity'][m][row['setting']]['mean']:.6f}"
            for m in models
        ]
        lines.append(f"| {row['setting']}{mark} | {row['cpu_ms']} | {row['speedup']}× | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_bundles() -> dict[str, Path]:
    from .common import default_bundle
    from .quality import trained_bundle

    return {"DINOv2 ViT-S/14 trained": trained_bundle(static=False), "ViT-B/16 random": default_bundle(False)[0]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.draft", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", action="append", type=Path, help="a bundle with an fp32 graph (repeatable)")
    parser.add_argument("--images", type=Path, help="folder of photos [default: Debian's wallpapers]")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    from .common import CACHE, machine
    from .real_photos import real_photos

    folder = args.images or real_photos(CACHE / "real-photos")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    bundles = {b.name: b for b in args.bundle} if args.bundle else default_bundles()
    report = {"machine": machine(), **measure(images, bundles)}
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
