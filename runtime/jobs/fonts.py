"""A font that can draw every name on a contact sheet: Pillow's built-in font has no accented letters, so
"Café Noël" came out as "Caf□ No□l". fontconfig is asked for a sans-serif font covering the characters to be
drawn (a system with CJK fonts draws CJK names); without fontconfig, the DejaVu Sans shipped here (its licence
beside it) covers Latin, Greek and Cyrillic."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable
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


@functools.cache
def _installed_font_covers(characters: frozenset[str]) -> bool:
    """Whether fontconfig knows a font with a glyph for every one of `characters` (fc-match names the closest
    font even when it has none of them: fc-list is asked instead)."""
    pattern = ":charset=" + " ".join(f"{ord(c):x}" for c in sorted(characters))
    try:
        found = subprocess.run(["fc-list", pattern, "file"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(found.stdout.strip())


def font_for(text: str, size: int) -> ImageFont.FreeTypeFont:
    """A `size` px font able to draw `text` (as far as the fonts on this system allow)."""
    try:
        return ImageFont.truetype(str(font_file(frozenset(text))), size)
    except OSError:  # a font file fontconfig named but FreeType cannot read
        return ImageFont.truetype(str(BUNDLED), size)


# Scripts the bundled DejaVu Sans has no glyphs for (a system font may): CJK, kana, Hangul, Thai, Devanagari, emoji.
UNCOVERED_BY_BUNDLED = (
    (0x0900, 0x097F), (0x0E00, 0x0E7F), (0x1100, 0x11FF), (0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0x1F300, 0x1FAFF),
)  # fmt: skip
CJK_FONTS = "Debian and Ubuntu: apt install fonts-noto-cjk; Fedora: google-noto-sans-cjk-fonts"


def missing_glyphs_note(texts: Iterable[str]) -> str | None:
    """A note when some names will be drawn as boxes: no installed font covers their script and the bundled one
    lacks it; it says which package adds one (fontconfig then finds it). None when every name can be drawn."""
    text = "".join(texts)
    lacking = sorted({c for c in text if any(low <= ord(c) <= high for low, high in UNCOVERED_BY_BUNDLED)})
    if not lacking or _installed_font_covers(frozenset(lacking)):
        return None
    shown = "".join(lacking[:6]) + ("…" if len(lacking) > 6 else "")
    return (
        f"some names hold characters no installed font can draw ({shown}): they show as boxes on the contact "
        f"sheet. Install a font that covers them ({CJK_FONTS}) and edge-search will use it."
    )
