"""PNG and WebP decoding through libvips, where Pillow is slow.

Measured on 131 real photos (Debian wallpapers; AMD EPYC, avx2 + fma, one thread; `python -m
benchmarks.decoding`): PNG decoding 114 -> 74 ms per image (libvips decodes with libspng), WebP 378 -> 268
ms (libwebp decodes a large WebP straight to a reduced size, like JPEG's draft mode; Pillow cannot; at
full size libwebp is no faster through libvips, so a WebP is only taken when it can be reduced). JPEG
stays with Pillow, whose draft decoding is as fast.

PNG pixels are identical (lossless); a WebP is decoded reduced only to >= 3x the model's input (see
`webp_scale`), and every case this module does not handle exactly as Pillow would
(16-bit or odd band layouts, EXIF rotation, an error of any kind) returns None: the caller then decodes
with Pillow, which also words the errors. libvips is a dependency with binary wheels (pyvips-binary);
where it cannot load, everything decodes with Pillow.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from PIL import Image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BANDS = (1, 2, 3, 4)  # L, LA, RGB, RGBA
WEBP_MARGIN = 1.5  # see webp_scale
DISABLE_ENV = "EDGE_SEARCH_NO_VIPS"  # set (to anything) to decode everything with Pillow

_vips: Any = None
_lock = threading.Lock()


def _library():
    """pyvips, imported once (~25 ms) and set up for many small decodes in threads; False when absent."""
    global _vips
    with _lock:
        if _vips is None and os.environ.get(DISABLE_ENV):
            _vips = False
        if _vips is None:
            try:
                import pyvips

                pyvips.cache_set_max(0)  # no operation cache: decoded images must not pile up in memory
                pyvips.concurrency_set(1)  # the indexer already decodes one image per thread
                _vips = pyvips
            except Exception:  # ImportError, or OSError/cffi errors when libvips itself cannot load
                _vips = False
    return _vips


def sniff(head: bytes) -> str | None:
    """ "png", "webp" or None, from a file's first 16 bytes."""
    if head.startswith(PNG_MAGIC):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _head(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:16])
    if hasattr(source, "getbuffer"):  # BytesIO
        return source.getbuffer()[:16].tobytes()
    with open(source, "rb") as handle:
        return handle.read(16)


def _data(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "getvalue"):
        return source.getvalue()
    with open(source, "rb") as handle:
        return handle.read()


def webp_scale(width: int, height: int, draft_hw: tuple[int, int] | None) -> float:
    """The reduction libwebp decodes at: both sides stay >= WEBP_MARGIN x the draft size; 1.0 = none.

    libwebp's reduced decoding is less faithful than JPEG's DCT scaling: on 16 real WebPs, fp32 embeddings
    against full decoding had min cosine 0.99987 at 2x the model's input and 0.999993 at 3x, where decoding
    plus preprocessing is still 1.9x faster than Pillow's. Hence 3x (the draft size is 2x)."""
    if draft_hw is None:
        return 1.0
    scale = WEBP_MARGIN * max(draft_hw[0] / height, draft_hw[1] / width)
    return min(scale, 1.0)


def decode(source, *, max_pixels: int, draft_hw: tuple[int, int] | None = None) -> Image.Image | None:
    """A PNG or WebP (path, bytes or BytesIO) decoded by libvips as a Pillow image, or None to let Pillow
    decode it (another format, a case handled differently, no libvips, or any libvips error)."""
    try:
        kind = sniff(_head(source))
    except OSError:
        return None
    if kind is None:
        return None
    vips = _library()
    if not vips:
        return None
    try:
        return _decode(vips, kind, _data(source), max_pixels, draft_hw)
    except Exception:  # pyvips.Error and friends: Pillow decodes it again and words the reason
        return None


def _decode(vips, kind: str, data: bytes, max_pixels: int, draft_hw) -> Image.Image | None:
    loader = vips.Image.pngload_buffer if kind == "png" else vips.Image.webpload_buffer
    # lazy: reads the header only; a truncated file fails rather than greying out; read top to bottom once
    header = loader(data, fail_on="error", access="sequential")
    if header.get_typeof("orientation") and header.get("orientation") not in (0, 1):
        return None  # EXIF-rotated: Pillow's exif_transpose keeps the one orientation rule
    if header.format != "uchar" or header.bands not in BANDS:
        return None  # 16-bit PNGs: Pillow's path scales them to 8 bits its own way
    image = header
    if kind == "webp":
        scale = webp_scale(header.width, header.height, draft_hw)
        if scale == 1.0:
            return None  # at full size libwebp through libvips is no faster than through Pillow
        image = loader(data, scale=scale, fail_on="error", access="sequential")
    if image.width * image.height > max_pixels:
        return None  # Pillow refuses it with the decompression-bomb message
    pixels = image.numpy()  # (h, w) or (h, w, bands)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return Image.fromarray(pixels)  # L, LA, RGB or RGBA
