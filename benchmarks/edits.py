"""Edited copies of a photo, as people make them: what "find my original" has to see through.

Each edit is a pure function Image -> Image (RGB); `save_edit` writes one as a user's file would be (JPEG
for the recompressed copy, PNG otherwise). Mild edits keep the whole picture (flip, colour, small and
recompressed); hard ones lose or move part of it (crop, rotation, letterbox).
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps


def flip(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)


def colour(image: Image.Image) -> Image.Image:
    """Warmer, more saturated and a little brighter, as a phone's filter does."""
    warmer = Image.merge(
        "RGB", [band.point(lambda v, f=f: min(255, int(v * f))) for band, f in zip(image.split(), (1.08, 1.0, 0.9))]
    )
    return ImageEnhance.Brightness(ImageEnhance.Color(warmer).enhance(1.3)).enhance(1.1)


def small_recompressed(image: Image.Image) -> Image.Image:
    """A quarter of the pixels and JPEG quality 60: a copy sent through a messenger."""
    small = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.BILINEAR)
    buffer = BytesIO()
    small.save(buffer, "JPEG", quality=60)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def crop(image: Image.Image) -> Image.Image:
    """The centre 70% of each side (half the picture's area is gone)."""
    w, h = image.size
    return image.crop((int(w * 0.15), int(h * 0.15), int(w * 0.85), int(h * 0.85)))


def rotation(image: Image.Image) -> Image.Image:
    """Turned 10 degrees, the corners filled white (a straightened scan)."""
    return image.rotate(10, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))


def letterbox(image: Image.Image) -> Image.Image:
    """Padded with black bars to 16:9 around the picture (a video frame, a story post)."""
    w, h = image.size
    width = max(w, int(h * 1.25 * 16 / 9))
    height = max(int(h * 1.25), int(width * 9 / 16))
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(image, ((width - w) // 2, (height - h) // 2))
    return canvas


MILD: dict[str, Callable[[Image.Image], Image.Image]] = {
    "flip": flip,
    "colour": colour,
    "small+jpeg": small_recompressed,
}
HARD: dict[str, Callable[[Image.Image], Image.Image]] = {"crop": crop, "rotation": rotation, "letterbox": letterbox}
EDITS = {**MILD, **HARD}


def flattened(image: Image.Image) -> Image.Image:
    """RGB, a transparent image laid over white (as edge-search shows it, and as an editor exports it)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def is_blank(path: Path, max_std: float = 4.0) -> bool:
    """Nearly one flat colour once flattened (a transparent overlay, a plain backdrop): no picture to find."""
    import numpy as np

    with Image.open(path) as image:
        image.draft("RGB", (256, 256))
        image.thumbnail((256, 256))
        return float(np.asarray(flattened(image).convert("L"), dtype=np.float32).std()) < max_std


def save_edit(source: Path, edit: str, directory: Path) -> Path:
    """`source` edited by `edit`, written into `directory` as `<stem>.<edit>.<png|jpg>`."""
    with Image.open(source) as image:
        edited = EDITS[edit](flattened(image))
    suffix = ".jpg" if edit == "small+jpeg" else ".png"
    path = directory / f"{source.stem}.{edit.replace('+', '-')}{suffix}"
    edited.save(path, quality=95) if suffix == ".jpg" else edited.save(path)
    return path
