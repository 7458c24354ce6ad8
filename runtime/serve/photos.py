"""What the service sends of the library: only files that were indexed as photos, checked again on every request.

A row that failed indexing is never served. A served file must still be a regular file, still inside an indexed
folder once symlinks are resolved (unless that folder was indexed with --follow-links), and still have the size
and modification time recorded when it was indexed; else the answer is 404. The checks are made on the open
descriptor that is then read, so a symlink swapped after the check cannot redirect the read.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from dataclasses import dataclass

from edge_search.runtime.files import FileStamp, open_regular, read_bounded, under
from edge_search.runtime.jobs.walk import inside_any
from edge_search.runtime.model.embedder import MAX_FILE_BYTES
from edge_search.runtime.serve.config import HttpError
from edge_search.runtime.store.catalog import FileState, Root, decode_path, encode_path

CHUNK = 256 * 1024
GONE = "The file is no longer there (moved or deleted since it was indexed)."
CHANGED = "The file has changed, or was replaced by another, since it was indexed (index again to serve it)."
OUTSIDE = "The file now leads outside the indexed folders; it is not served."


@dataclass
class OpenPhoto:
    """An indexed photo, opened and checked: read it (once) or stream it, then it is closed."""

    fd: int
    size: int
    path: str

    @property
    def media_type(self) -> str:
        guessed = mimetypes.guess_type(os.fsencode(self.path).decode("utf-8", "replace"))[0]
        return guessed if guessed and guessed.startswith(("image/", "video/")) else "application/octet-stream"

    def read(self) -> bytes:
        try:
            data = read_bounded(self.fd, MAX_FILE_BYTES)
        finally:
            self.close()
        if data is None:
            raise HttpError(404, CHANGED)
        return data

    def chunks(self, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The file's bytes as recorded (from `start`, `length` of them): never past its recorded size, whatever it
        grew to since."""
        left = min(self.size - start, self.size if length is None else length)
        try:
            if start:
                os.lseek(self.fd, start, os.SEEK_SET)
            while left > 0:
                chunk = os.read(self.fd, min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) asked for by a `Range: bytes=...` header (what a video player seeks with); None: the whole
    file (no header, or several ranges, which may be answered whole). HttpError 416 for a range outside the file."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if first:
            start = int(first)
            end = int(last) if last else size - 1
        else:
            start, end = max(0, size - int(last)), size - 1  # the last N bytes
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        raise HttpError(416, f"The range {header!r} is outside the file's {size} bytes.")
    return start, min(end, size - 1) - start + 1


def open_photo(row: FileState | None, roots: list[Root], key: int) -> OpenPhoto:
    """The indexed photo `row` (the catalog's ok row for `key`, None when there is none), or HttpError 404."""
    if row is None:
        raise HttpError(404, f"No indexed image has id {key}.")
    root = next((r for r in roots if under(row.path, [encode_path(r.path)])), None)
    if root is None:
        raise HttpError(404, "The file is no longer under an indexed folder.")
    path = decode_path(row.path)
    real = os.path.realpath(path)
    if not root.follow_links and not inside_any(real, [os.path.realpath(r.path) for r in roots]):
        raise HttpError(404, OUTSIDE)
    try:
        fd, info = open_regular(real, no_follow=True)  # a link swapped in since realpath: refused, not followed
    except OSError:
        raise HttpError(404, GONE) from None
    if not FileStamp.of(info).matches(row.size, row.mtime_ns, row.inode):  # another file, or this one changed
        os.close(fd)
        raise HttpError(404, CHANGED)
    return OpenPhoto(fd, info.st_size, path)
