"""Thumbnails made on first request and cached beside the index, within a size bound."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from edge_search.runtime.errors import ImageDecodeError
from edge_search.runtime.files import write_atomically
from edge_search.runtime.model.preprocess import open_image
from edge_search.runtime.model.thumbnail import THUMB_EDGE, encode_thumbnail

SUFFIX = ".thumb"  # a JPEG, or a WebP for a transparent picture (`media_type` tells which)


def media_type(thumbnail: bytes) -> str:
    return "image/webp" if thumbnail[:4] == b"RIFF" else "image/jpeg"


class ThumbnailCache:
    """`<index>/thumbs/<id>.thumb`, oldest dropped first beyond `max_bytes`. A catalog id is never reused
    for other content (a changed file gets a new id), so a cached thumbnail never goes stale."""

    def __init__(self, directory: Path, max_bytes: int = 256 * 2**20):
        self.directory = directory
        self.max_bytes = max_bytes
        self._size: int | None = None

    def get(self, key: int, source: Callable[[], BinaryIO]) -> bytes:
        """The cached thumbnail of `key`, else one made from `source()` (the photo's bytes) and cached."""
        cached = self.directory / f"{key}{SUFFIX}"
        try:
            return cached.read_bytes()
        except OSError:
            pass
        data = make_thumbnail(source())
        self._store(cached, data)
        return data

    def _store(self, path: Path, data: bytes) -> None:
        try:
            write_atomically(path, data)
        except OSError:
            return  # a read-only index still serves thumbnails, made each time
        if self._size is None:
            for legacy in self.directory.glob("*.jpg"):  # made before transparent thumbnails kept their alpha
                legacy.unlink(missing_ok=True)
            self._size = sum(p.stat().st_size for p in self.directory.glob(f"*{SUFFIX}"))
        else:
            self._size += len(data)
        if self._size > self.max_bytes:
            self._trim()

    def _trim(self) -> None:
        files = sorted(self.directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for path in files:
            if total <= self.max_bytes * 0.8:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
        self._size = total


def make_thumbnail(source: str | BinaryIO) -> bytes:
    """A JPEG no larger than THUMB_EDGE on its long side, or a WebP with its alpha for a transparent picture (so
    the page can show it on a checkerboard instead of as a blank white tile); ImageDecodeError if the file
    cannot be read."""
    return encode_thumbnail(open_image(source, draft_hw=(THUMB_EDGE, THUMB_EDGE)))


__all__ = ["ImageDecodeError", "ThumbnailCache", "make_thumbnail", "media_type"]
