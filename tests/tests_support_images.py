"""Hostile images the tests make: small files that lie about what they hold."""

from __future__ import annotations

import io

from PIL import Image


def lying_jpeg(side: int = 65000) -> bytes:
    """A 693-byte JPEG whose header declares `side` x `side` pixels (a real 64 x 64 image, its size patched)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)
