"""Fewer tokens: what `export-model --merge-tokens R` (ToMe, export/token_merging.py) costs in search quality on
trained weights and saves in time, measured on the bundles export-model writes.

    python -m benchmarks.tome [--quick] [--json FILE]

- Quality: the trained DINOv2 ViT-S/14 fixture exported per r (257 tokens at 224 px), every precision as the
  runtime runs it (int8-static on OpenVINO); the quality benchmark's gallery, queries and edits
  (benchmarks/quality.py): top-1 per edit and the mild edits' mean, and the merged embedding's cosine to the
  unmerged model's (the manifest's `against_unmerged`, on the export's parity images).
- Speed: ViT-B/16 (random weights: the default model's shapes) exported per r from one checkpoint; model only,
  batch 8, every engine x precision the runtime offers on this machine, run in turn within each round; ratio to
  r = 0 on the same engine and precision.

The issue's rule: an option only if the mild edits' top-1 stays within 1 point of the unmerged graph's.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import section_main

RATES = (0, 4, 8, 12)  # tokens merged per block
ENGINES = (("cpu", "fp32"), ("cpu", "int8"), ("openvino", "int8-static"))


def quality(quick: bool) -> dict:
    from edge_search.runtime.model.bundle import Bundle

    from .edits import EDITS, MILD, save_edit
    from .quality import _measured, gallery_and_queries, trained_bundle
    from .trained_fixture import FixtureUnavailable, trained_fixture

    try:
        fixture = trained_fixture()
    except FixtureUnavailable as exc:
        return {"status": f"not run: {exc}"}
    gallery, queries = gallery_and_queries(fixture, quick)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tome-") as work:
        copies = {edit: [save_edit(original, edit, Path(work)) for original in queries] for edit in EDITS}
        for r in (0, 8) if quick else RATES:
            bundle = trained_bundle(static=not quick, merge_tokens=r)
            merging = Bundle.load(bundle).manifest.token_merging or {}
            report = _measured(fixture, bundle, gallery, queries, copies, quick, poolings_too=False)
            for precision, figures in report["precisions"].items():
                if "edits" not in figures:
                    continue
                top1 = {edit: figures["edits"][edit]["top1_percent"] for edit in EDITS}
                rows.append(
                    {
                        "r": r,
                        "precision": precision,
                        "engine": figures["engine"],
                        "tokens_last_block": merging.get("tokens_last_block", 257),
                        "against_unmerged": merging.get("against_unmerged"),
                        "top1_percent": top1,
                        "mild_mean": round(float(np.mean([top1[e] for e in MILD])), 1),
                    }
                )
    return {
        "model": "DINOv2 ViT-S/14 trained (the fixture), the bundles export-model writes",
        "gallery": len(gallery),
        "queries": len(queries),
        "mild": list(MILD),
        "rows": rows,
    }


def speed(quick: bool) -> dict:
    from edge_search.runtime.errors import EdgeSearchError
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.model.session import open_session

    from .common import default_bundle

    sessions = {}
    for r in (0, 8) if quick else RATES:
        bundle = Bundle.load(default_bundle(quick, r)[0])
        for device, precision in ENGINES:
            if precision not in bundle.precisions:
                continue
            try:
                sessions[(r, device, precision)] = open_session(bundle, device=device, precision=precision)[0]
            except EdgeSearchError:  # OpenVINO not installed
                continue
    height, width = bundle.manifest.preprocess.input_hw()
    pixels = np.random.default_rng(0).standard_normal((8, 3, height, width)).astype(np.float32)
    timings: dict[tuple, list[float]] = {key: [] for key in sessions}
    for session in sessions.values():
        session.run(pixels)
    for _ in range(3 if quick else 7):
        for key, session in sessions.items():
            started = time.perf_counter()
            session.run(pixels)
            timings[key].append(time.perf_counter() - started)
    rows = []
    for (r, device, precision), seconds in timings.items():
        base = statistics.median(timings[(0, device, precision)])
        rows.append(
            {
                "r": r,
                "engine": sessions[(r, device, precision)].provider,
                "precision": precision,
                "images_per_s": round(8 / statistics.median(seconds), 2),
                "speedup": round(base / statistics.median(seconds), 2),
            }
        )
    return {"model": f"{'tiny ViT' if quick else 'ViT-B/16'} random weights, batch 8, model only", "rows": rows}


def measure(quick: bool) -> dict:
    return {"quality": quality(quick), "speed": speed(quick)}


def markdown(report: dict) -> str:
    q, s = report["quality"], report["speed"]
    lines = []
    if "rows" in q:
        edits = list(q["rows"][0]["top1_percent"])
        lines += [
            f"Quality: {q['model']}; gallery {q['gallery']}, {q['queries']} originals; top-1 % per edit (mild: "
            f"{', '.join(q['mild'])}); cosine to unmerged: min / mean on the export's parity images.",
            "",
            "| r | precision | tokens in the last block | cosine to unmerged | " + " | ".join(edits) + " | mild mean |",
            "|---|---|---|---|" + "---|" * len(edits) + "---|",
        ]
        for row in q["rows"]:
            cells = " | ".join(str(row["top1_percent"][e]) for e in edits)
            against = row["against_unmerged"]
            cosine = f"{against['min_cosine']:.4f} / {against['mean_cosine']:.4f}" if against else "1"
            lines.append(
                f"| {row['r']} | {row['precision']} | {row['tokens_last_block']} | {cosine} | {cells} | "
                f"{row['mild_mean']} |"
            )
    else:
        lines.append(f"Quality: {q['status']}")
    lines += ["", f"Speed: {s['model']}; ratio to r = 0 on the same engine and precision.", ""]
    columns = sorted({(row["engine"], row["precision"]) for row in s["rows"]}, key=str)
    lines += [
        "| r | " + " | ".join(f"{engine} {precision} images/s (×)" for engine, precision in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    by_r: dict[int, dict[tuple, dict]] = {}
    for row in s["rows"]:
        by_r.setdefault(row["r"], {})[(row["engine"], row["precision"])] = row
    for r, cells in by_r.items():
        shown = [f"{cells[c]['images_per_s']} ({cells[c]['speedup']}×)" if c in cells else "–" for c in columns]
        lines.append(f"| {r} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    section_main("python -m benchmarks.tome", __doc__, measure, markdown)
