"""Query photos the library already holds are answered from their stored embeddings, not by the model: a photo of
the index is then its own first result at 1.0000 (the very vector it was indexed with, whatever engine indexed it),
and a query made only of such photos loads no model at all, so a cold query runs at the catalog's speed.

A query photo is known by its content hash (sha256 of its bytes): the same bytes anywhere (an upload, a copy in
Downloads) are the same photo. Words, PIL images and photos the index does not hold go through the model."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from edge_search.runtime.files import open_regular, sha256_file
from edge_search.runtime.jobs.combined_query import Term
from edge_search.runtime.options import ImageSource


class ContentLookup(Protocol):
    def embedding_of_content(self, sha: str) -> tuple[np.ndarray, bytes | None] | None: ...


# A query file's hash by the file's state (device, inode, size, modification and change times): one command asks
# several times (the prewarm's guess, whether a model is needed, the query, --exclude-self); the file is read once.
_HASHED: dict[tuple[int, ...], str] = {}
_HASHED_KEPT = 64


def content_hash(image: ImageSource) -> str | None:
    """The sha256 of a query photo's bytes (a path or uploaded bytes); None for a decoded picture, or a path that
    is not a readable regular file (the model's path then reports why)."""
    if isinstance(image, bytes):
        return hashlib.sha256(image).hexdigest()
    if not isinstance(image, (str, os.PathLike)):
        return None
    try:
        fd, info = open_regular(image)  # a FIFO or device named as a query is not read here
    except OSError:
        return None
    state = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if state in _HASHED:
        os.close(fd)
        return _HASHED[state]
    if len(_HASHED) >= _HASHED_KEPT:
        _HASHED.clear()
    _HASHED[state] = sha = sha256_file(fd)
    return sha


def stored_vector(catalog: ContentLookup, image: ImageSource) -> tuple[str, np.ndarray] | None:
    """(content hash, stored unit embedding) of a query photo the index holds; None for one it does not."""
    sha = content_hash(image)
    stored = catalog.embedding_of_content(sha) if sha else None
    return None if stored is None or sha is None else (sha, stored[0])


def stored_vectors(catalog: ContentLookup, terms: Sequence[Term]) -> dict[int, np.ndarray]:
    """Position among the photo terms -> the stored unit embedding, for the query photos the index holds."""
    photos = [term.image for term in terms if term.image is not None]
    found = {position: stored_vector(catalog, image) for position, image in enumerate(photos)}
    return {position: known[1] for position, known in found.items() if known is not None}


def needs_model(terms: Sequence[Term], known: dict[int, np.ndarray]) -> bool:
    """Whether some term (words, or a photo the index does not hold) has to be embedded by the model."""
    photos = sum(term.image is not None for term in terms)
    return photos < len(terms) or len(known) < photos
