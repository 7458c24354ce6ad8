"""A font that can draw every name on a contact sheet: Pillow's built-in font has no accented letters, so
"Café Noël" came out as "Caf□ No□l". fontconfig is asked for a sans-serif font covering the characters to be
drawn (a system with CJK fonts draws CJK names); without fontconfig, the DejaVu Sans shipped here (its licence
beside it) covers Latin, Greek and Cyrillic."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from PIL import ImageFont

BUNDLED = Path(__file__).resolve().parent / "font_files" / "DejaVuSans.ttf"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")


@functools.cache
def font_file(characters: frozenset[str]) -> Path:
    """The font file fontconfig matches for sans-serif covering `characters`, else the bundled one."""
    wanted = sorted(ord(c) for c in characters if ord(c) > 0x7E)
    pattern = "sans-serif" + (":charset=" + " ".join(f"{c:x}" for c in wanted) if wanted else "")
    try:
        found = subprocess.run(
            ["fc-match", "-f", "%{file}", pattern], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ""
    path = Path(found) if found else None
    if path is not None and path.suffix.lower() in FONT_SUFFIXES and path.is_file():
        return path
    return BUNDLED


def font_for(text: str, size: int) -> ImageFont.FreeTypeFont:
    """A `size` px font able to draw `text` (as far as the fonts on this system allow)."""
    try:
        return ImageFont.truetype(str(font_file(frozenset(text))), size)
    except OSError:  # a font file fontconfig named but FreeType cannot read
        return ImageFont.truetype(str(BUNDLED), size)
