"""The query beside its results, each tile labelled: a picture of an answer.

A header names the query file(s); each tile shows rank, score (4 decimals, so 0.9996 is not "1.000")
and the shortened file name; a file that is gone is marked missing; transparency is shown over a
checkerboard, as image viewers do.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from edge_search.runtime.errors import ImageDecodeError, StorageError
from edge_search.runtime.jobs.fonts import font_for
from edge_search.runtime.model.preprocess import open_image
from edge_search.runtime.model.video import format_time

TILE = 256
LABEL_H = 46
HEADER_H = 34
PAD = 8
BACKGROUND = (18, 18, 18)


def _checkerboard(size: tuple[int, int], square: int = 12) -> Image.Image:
    board = Image.new("RGB", size, (204, 204, 204))
    draw = ImageDraw.Draw(board)
    for y in range(0, size[1], square):
        for x in range((y // square) % 2 * square, size[0], 2 * square):
            draw.rectangle([x, y, x + square - 1, y + square - 1], fill=(153, 153, 153))
    return board


def _tile(source) -> tuple[Image.Image, bool]:
    """(tile, whether the image could be read)."""
    try:
        image = open_image(io.BytesIO(source) if isinstance(source, bytes) else source)
    except ImageDecodeError:
        return Image.new("RGB", (TILE, TILE), (70, 30, 30)), False
    image = ImageOps.contain(image, (TILE, TILE))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        shown = _checkerboard(rgba.size)
        shown.paste(rgba, mask=rgba.getchannel("A"))
    else:
        shown = image.convert("RGB")
    return ImageOps.pad(shown, (TILE, TILE), color=(30, 30, 30)), True


def _short(name: str, width: int = 26) -> str:
    name = os.fsencode(name).decode("utf-8", "replace")
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2) :]


def folder_and_name(path: str) -> str:
    """The parent folder and the name, as in "holiday 2024/IMG_0001.jpg": it tells apart files of one name."""
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}" if parent else os.path.basename(path)


def hit_label(hit) -> str:
    """Rank and score with 4 decimals (0.9996 must not read as 1.000), and a video's moment."""
    moment = f"  @ {format_time(hit.at)}" if getattr(hit, "at", None) is not None else ""
    return f"#{hit.rank}  {hit.score:.4f}{moment}"


def write_montage(
    labels: Sequence[str],
    sources: Sequence,
    hits: Sequence,
    out: Path,
    columns: int = 6,
    text: str | None = None,
    frames: Mapping[int, bytes] | None = None,
) -> Path:
    """Query tile(s) first (framed), then each hit; saved in the format of `out`'s suffix. `frames`: the stored
    picture of each video hit's frame, by key (a video is shown at its matching moment)."""
    frames = frames or {}
    cells = [
        (source, "query", os.path.basename(str(label)) if label != "-" else "stdin", None, True)
        for label, source in zip(labels, sources)
    ]
    cells += [
        (frames.get(hit.key, hit.path), hit_label(hit), folder_and_name(hit.path), hit.path, False) for hit in hits
    ]
    named = [_short(str(label), 60) for label in labels] + ([f'"{_short(text, 60)}"'] if text else [])
    header = "query: " + ", ".join(named) + f"  ·  {len(hits)} result(s)"
    return write_sheet(header, cells, out, columns)


def write_sheet(header: str, cells: Sequence[tuple], out: Path, columns: int = 6) -> Path:
    """A contact sheet: `header`, then one tile per (source, label, name, path or None, framed) cell."""
    columns = max(1, min(columns, len(cells)))
    rows = -(-len(cells) // columns)
    width = PAD + columns * (TILE + PAD)
    sheet = Image.new("RGB", (width, HEADER_H + PAD + rows * (TILE + LABEL_H + PAD)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    drawn = header + "".join(f"{label}{name}" for _, label, name, _, _ in cells)
    font, small = font_for(drawn, 18), font_for(drawn, 14)
    draw.text((PAD, PAD), header, fill=(255, 200, 0), font=font)
    for i, (source, label, name, path, framed) in enumerate(cells):
        x = PAD + (i % columns) * (TILE + PAD)
        y = HEADER_H + PAD + (i // columns) * (TILE + LABEL_H + PAD)
        tile, readable = _tile(source)
        sheet.paste(tile, (x, y))
        if not readable:
            missing = path is not None and not os.path.exists(path)
            draw.text(
                (x + 10, y + TILE // 2 - 10),
                "missing file" if missing else "cannot be read",
                fill=(255, 120, 120),
                font=font,
            )
        if framed:
            draw.rectangle([x - 3, y - 3, x + TILE + 2, y + TILE + 2], outline=(255, 200, 0), width=3)
        draw.text((x + 4, y + TILE + 4), label, fill=(235, 235, 235), font=font)
        draw.text((x + 4, y + TILE + 26), _short(name), fill=(180, 180, 180), font=small)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() in (".jpg", ".jpeg"):
            sheet.save(out, quality=90)
        else:
            sheet.save(out)
    except (OSError, ValueError) as exc:
        raise StorageError(f"Cannot write the montage {out}: {exc}") from exc
    return out


def write_dupes_sheets(groups: Sequence, folder: Path) -> list[Path]:
    """One sheet per duplicates group: the suggested keeper framed, then the others with their score to it."""
    written = []
    for number, group in enumerate(groups, 1):
        cells = [
            (f.path, "keep" if i == 0 else f"{score:.4f}", folder_and_name(f.path), f.path, i == 0)
            for i, (f, score) in enumerate(zip(group.files, group.scores_to_keep))
        ]
        keep = _short(folder_and_name(group.keep), 50)
        header = f"group {number} · {group.kind} · {len(group.files)} files · keep {keep}"
        written.append(write_sheet(header, cells, folder / f"group-{number:04d}.jpg"))
    return written
