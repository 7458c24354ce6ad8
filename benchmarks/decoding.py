"""Where preprocessing time goes, per format, on a folder of photos: decoding (Pillow alone vs the
runtime's decoder, which sends PNG and large WebP to libvips), colour conversion, resize, and
normalisation. CPU milliseconds per image (process time: a decoder that uses two threads costs both
cores, which the model needs too), mean over each format's files; ViT-B/16's processor settings.

    python -m benchmarks.decoding [--images DIR|real] [--draft-edge 448]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WebP"}


def _ms(started: float) -> float:
    return (time.process_time() - started) * 1000


def profile(images: Path, draft_edge: int = 448, config=None) -> list[dict]:
    """One row per format: files, mean megapixels, and ms per image for each step."""
    from PIL import Image

    from edge_search.runtime.model import vips_decode
    from edge_search.runtime.model.preprocess import (
        has_alpha,
        open_image,
        over_white,
        rescale_normalize,
        to_rgb,
    )

    if config is None:  # ViT-B/16's processor: 224 x 224 bilinear, mean = std = 0.5
        from edge_search.runtime.model.bundle import PreprocessConfig

        config = PreprocessConfig(
            processor_class="ViTImageProcessor",
            do_convert_rgb=True,
            do_resize=True,
            size={"height": 224, "width": 224},
            resample=2,
            do_center_crop=False,
            crop_size=None,
            do_rescale=True,
            rescale_factor=1 / 255,
            do_normalize=True,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        )
    steps: dict[str, defaultdict] = defaultdict(lambda: defaultdict(list))
    draft = (draft_edge, draft_edge)
    for path in sorted(images.iterdir()):
        kind = FORMATS.get(path.suffix.lower())
        if kind is None:
            continue
        data = path.read_bytes()
        row = steps[kind]
        with _vips_off(vips_decode):
            started = time.process_time()
            by_pillow = open_image(io.BytesIO(data), draft_hw=draft)
            row["decode_pillow_ms"].append(_ms(started))
        started = time.process_time()
        image = open_image(io.BytesIO(data), draft_hw=draft)
        row["decode_runtime_ms"].append(_ms(started))
        row["megapixels"].append(by_pillow.width * by_pillow.height / 1e6)
        # the Preprocessor's order: an image with alpha is resized first, then laid over white
        alpha = has_alpha(image)
        started = time.process_time()
        rgb = image.convert("RGBA") if alpha else to_rgb(image)
        row["to_rgb_ms"].append(_ms(started))
        started = time.process_time()
        pixels = np.asarray(rgb.resize((224, 224), resample=Image.Resampling(config.resample)))
        row["resize_ms"].append(_ms(started))
        if alpha:
            started = time.process_time()
            pixels = np.asarray(over_white(Image.fromarray(pixels, "RGBA")))
            row["to_rgb_ms"][-1] += _ms(started)
        started = time.process_time()
        np.ascontiguousarray(rescale_normalize(pixels, config).transpose(2, 0, 1))
        row["normalise_ms"].append(_ms(started))
    rows = []
    for kind, row in sorted(steps.items()):
        summary = {"format": kind, "files": len(row["megapixels"])}
        summary.update({name: round(statistics.fmean(values), 1) for name, values in row.items()})
        summary["decode_speedup"] = round(summary["decode_pillow_ms"] / summary["decode_runtime_ms"], 2)
        rows.append(summary)
    return rows


class _vips_off:
    """Decode with Pillow only, for the comparison."""

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.saved, self.module._vips = self.module._vips, False

    def __exit__(self, *exc):
        self.module._vips = self.saved


def markdown(rows: list[dict]) -> list[str]:
    lines = [
        "| format | files | mean MP decoded | decode, Pillow | decode, runtime | speed-up | to RGB | resize | normalise |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['format']} | {r['files']} | {r['megapixels']:.1f} | {r['decode_pillow_ms']} ms | {r['decode_runtime_ms']} ms "
            f"| {r['decode_speedup']}× | {r['to_rgb_ms']} ms | {r['resize_ms']} ms | {r['normalise_ms']} ms |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decoding", description=__doc__)
    parser.add_argument(
        "--images", default="real", help="folder of photos, or `real` (Debian's wallpapers, gathered once)"
    )
    parser.add_argument(
        "--draft-edge", type=int, default=448, help="the draft size the runtime decodes JPEG/WebP to (2x 224)"
    )
    args = parser.parse_args()
    if args.images == "real":
        from .common import CACHE
        from .real_photos import real_photos

        images = real_photos(CACHE / "real-photos")
    else:
        images = Path(args.images)
    print("\n".join(markdown(profile(images, args.draft_edge))))


if __name__ == "__main__":
    main()
