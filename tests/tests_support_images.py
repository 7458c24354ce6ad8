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


def lying_png(width: int, height: int) -> bytes:
    """A small PNG whose header declares `width` x `height` pixels (a real 8 x 8 image, its IHDR patched and its
    checksum made right, so that only decoding would find out)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (20, 160, 90)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)
