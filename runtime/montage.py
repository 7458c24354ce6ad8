"""The query image beside its results, labelled with rank and score: a picture of an answer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from .errors import ImageDecodeError, StorageError
from .preprocess import open_image, to_rgb

TILE = 256
LABEL_H = 28
PAD = 8


def _tile(path: str | Path) -> Image.Image:
    try:
        image = to_rgb(open_image(path))
    except ImageDecodeError:
        image = Image.new("RGB", (TILE, TILE), (90, 90, 90))
    return ImageOps.pad(image, (TILE, TILE), color=(30, 30, 30))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def write_montage(query: str | Path, hits: Sequence, out: Path, columns: int = 6) -> Path:
    """Query first (framed), then each hit with "#rank  score"; saved as JPEG or PNG by suffix."""
    cells = [(query, "query")] + [(hit.path, f"#{hit.rank}  {hit.score:.3f}") for hit in hits]
    columns = max(1, min(columns, len(cells)))
    rows = -(-len(cells) // columns)
    sheet = Image.new("RGB", (PAD + columns * (TILE + PAD), PAD + rows * (TILE + LABEL_H + PAD)), (18, 18, 18))
    draw = ImageDraw.Draw(sheet)
    font = _font(18)
    for i, (path, label) in enumerate(cells):
        x = PAD + (i % columns) * (TILE + PAD)
        y = PAD + (i // columns) * (TILE + LABEL_H + PAD)
        sheet.paste(_tile(path), (x, y))
        if i == 0:
            draw.rectangle([x - 3, y - 3, x + TILE + 2, y + TILE + 2], outline=(255, 200, 0), width=3)
        draw.text((x + 4, y + TILE + 4), label, fill=(235, 235, 235), font=font)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(out, quality=90) if out.suffix.lower() in (".jpg", ".jpeg") else sheet.save(out)
    except (OSError, ValueError) as exc:
        raise StorageError(f"Cannot write the montage {out}: {exc}") from exc
    return out
