"""Pixel signatures for files indexed before signatures existed: decoded once more, never embedded again.

`index` fills in every missing one (and stores them); `dupes` makes the few it needs for the pairs it decides
(and stores nothing: it is a reader). Either way the decode is the indexer's (JPEG draft, the same limits), so a
signature made later matches one made at index time.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from edge_search.runtime.errors import ImageDecodeError
from edge_search.runtime.host import default_threads
from edge_search.runtime.jobs.chunked import store_in_chunks
from edge_search.runtime.model.embedder import read_file
from edge_search.runtime.model.preprocess import default_max_pixels, has_alpha, open_image, to_rgb
from edge_search.runtime.model.signature import signature_of

DRAFT_HW = (448, 448)  # a JPEG decoded reduced, as the indexer does for a 224-pixel model (DRAFT_FACTOR 2)
CHUNK = 64  # signatures stored per transaction


def signature_of_file(path: str, max_pixels: int | None = None) -> bytes | None:
    """The signature of the picture in `path`, or None when it cannot be read or decoded now."""
    data = read_file(path)
    if isinstance(data, str):
        return None
    try:
        image = open_image(io.BytesIO(data), max_pixels=max_pixels or default_max_pixels(1), draft_hw=DRAFT_HW)
        picture = image.convert("RGBA") if has_alpha(image) else to_rgb(image)
        return signature_of(picture, aspect=image.width / max(1, image.height))
    except (ImageDecodeError, OSError, ValueError, MemoryError):
        return None


def signatures_of(
    rows: Iterable[tuple[int, str]], *, workers: int | None = None, stop: threading.Event | None = None
) -> Iterator[tuple[int, bytes | None]]:
    """(id, signature or None) for each (id, path), decoded in a thread pool (Pillow releases the GIL)."""
    workers = workers or default_threads()
    max_pixels = default_max_pixels(workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="signature") as pool:
        pending = list(rows)
        for start in range(0, len(pending), CHUNK):
            if stop is not None and stop.is_set():
                return
            part = pending[start : start + CHUNK]
            made = pool.map(lambda row: signature_of_file(row[1], max_pixels), part)
            yield from zip((key for key, _ in part), made)


def fill_in(
    unsigned: list[tuple[int, str]],
    store: Callable[[list[tuple[int, bytes]]], None],
    *,
    stop: threading.Event | None = None,
) -> int:
    """Make and `store` (in chunks, each one transaction) the signatures of `unsigned` (id, path) rows; returns how
    many were stored. A file that cannot be decoded now keeps none (`dupes` then never groups it as near)."""
    made = ((key, signature) for key, signature in signatures_of(unsigned, stop=stop) if signature is not None)
    return store_in_chunks(made, store, CHUNK)
