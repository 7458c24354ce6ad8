"""The small picture a page, an API thumbnail or a montage shows of a photo or a video frame: one size, one
encoding, wherever it is made."""

from __future__ import annotations

import io

from PIL import Image

from edge_search.runtime.model.preprocess import has_alpha, to_rgb

THUMB_EDGE = 320


def encode_thumbnail(image: Image.Image) -> bytes:
    """`image` shrunk in place to at most THUMB_EDGE on its long side, as a JPEG, or a WebP with its alpha for a
    transparent picture (so the page can show it on a checkerboard instead of as a blank white tile)."""
    image.thumbnail((THUMB_EDGE, THUMB_EDGE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    if has_alpha(image):
        image.convert("RGBA").save(buffer, "WEBP", quality=82)
    else:
        to_rgb(image).save(buffer, "JPEG", quality=82)
    return buffer.getvalue()
