"""Paths in, unit vectors out: decoding runs ahead of the model in a bounded thread pool.

Pillow releases the GIL while it decodes and resizes, so the pool keeps the cores busy while
onnxruntime runs a batch. A bad file becomes an error result for that file; the batch goes on.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_search.runtime.errors import ImageDecodeError
from edge_search.runtime.files import NotRegularFile, open_regular, read_bounded
from edge_search.runtime.host import default_threads
from edge_search.runtime.model.preprocess import Preprocessor
from edge_search.runtime.model.session import EmbeddingSession

MAX_FILE_BYTES = 512 * 1024 * 1024  # larger "images" are refused before they are read into memory
VANISHED = "file not found (deleted?)"


@dataclass(frozen=True)
class EmbedResult:
    path: Path
    vector: np.ndarray | None = None
    error: str | None = None
    sha256: str | None = None
    known: bool = False  # the content hash is in `reuse`: not decoded, the caller has its embedding
    signature: bytes | None = None  # the picture's pixel signature (`model.signature`), made from the same decode

    @property
    def ok(self) -> bool:
        return self.vector is not None

    @property
    def vanished(self) -> bool:
        """The file was deleted between the folder walk and its turn to be read."""
        return self.error == VANISHED


def unreadable(exc: OSError) -> str:
    """Why a file could not be opened, in the words a report shows wherever files are read (photos and videos)."""
    if isinstance(exc, FileNotFoundError):
        return VANISHED
    if isinstance(exc, NotRegularFile):
        return str(exc)
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read ({exc.strerror or exc})"


def read_file(path: Path | str, limit: int = MAX_FILE_BYTES) -> bytes | str:
    """A file's bytes, or the reason it cannot be read (the same words wherever files are read).

    Only a regular file is read (after following links): a FIFO, a device such as /dev/zero or a socket is
    refused without a byte read and without blocking; and the read stops at `limit` whatever `stat` says."""
    try:
        fd, info = open_regular(path)
    except OSError as exc:
        return unreadable(exc)
    try:
        if info.st_size > limit:
            return f"file too large ({info.st_size} bytes)"
        data = read_bounded(fd, limit)
        return f"file too large (more than {limit} bytes)" if data is None else data
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    finally:
        os.close(fd)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


_NOTHING: frozenset[str] = frozenset()  # no `reuse` given: every file is embedded, copies included


class _FirstOfContent:
    """Which input position first had each content: decode threads race, so a later copy may be hashed first;
    only a copy whose content appeared at an earlier position skips decoding."""

    def __init__(self) -> None:
        self._first: dict[str, int] = {}
        self._lock = threading.Lock()

    def earlier_than(self, sha: str, position: int) -> bool:
        with self._lock:
            first = self._first.setdefault(sha, position)
            if position < first:
                self._first[sha] = position
            return first < position


class Embedder:
    def __init__(
        self,
        session: EmbeddingSession,
        preprocessor: Preprocessor,
        *,
        batch_size: int = 8,
        workers: int | None = None,
    ):
        self.session = session
        self.preprocessor = preprocessor
        self.batch_size = max(1, batch_size)
        self.workers = workers or default_threads()

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return l2_normalize(self.session.run(pixels))

    def _load(
        self, path: Path, reuse: Container[str], data: bytes | None = None, seen: Callable[[str], bool] | None = None
    ) -> tuple[np.ndarray | None, str, bytes | None] | str:
        """(pixels, sha256 of the file, pixel signature) or the reason it failed; the file is read once (unless its
        `data` came with it), hashed before it is decoded, and not decoded at all when its hash is in
        `reuse` or `seen` says an earlier file of this run has the same content (pixels and signature None)."""
        try:
            if data is None:
                read = read_file(path)
                if isinstance(read, str):
                    return read
                data = read
            sha = hashlib.sha256(data).hexdigest()
            if sha in reuse or (seen is not None and seen(sha)):
                return None, sha, None
            pixels, signature = self.preprocessor.load_bytes_signed(data, path)
            return pixels, sha, signature
        except ImageDecodeError as exc:
            return exc.reason
        except OSError as exc:
            return f"cannot read ({exc.strerror or exc})"
        except MemoryError:
            return "out of memory while decoding"

    def embed(
        self,
        paths: Iterable[str | os.PathLike[str] | tuple[str | os.PathLike[str], bytes]],
        *,
        reuse: Container[str] = _NOTHING,
        stop: threading.Event | None = None,
    ) -> Iterator[EmbedResult]:
        """Results in input order; decoding of later files overlaps inference of earlier ones.

        An item is a path, or (path, the file's bytes) when they were read elsewhere (a Ray worker
        given the bytes by the box). Files whose sha256 is in `reuse` come back as `known` results
        without being decoded; when `reuse` is given (the caller can look embeddings up by content), so do
        files whose content an earlier file of this call already had: identical copies are embedded once.
        Once `stop` is set, no new file is started: what is decoded is embedded and returned, the rest dropped.
        """
        pending: list = []
        ready = 0
        share = reuse is not _NOTHING
        first_of = _FirstOfContent()
        embedded_here: set[str] = set()  # contents sent to the model by this call
        window = self.batch_size * 2 + self.workers
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="decode") as pool:
            in_flight: deque[tuple[Path, Future]] = deque()
            source = iter(paths)
            positions = itertools.count()
            exhausted = False
            while in_flight or not exhausted:
                if stop is not None and stop.is_set():
                    for _, future in in_flight:
                        future.cancel()
                    break
                while not exhausted and len(in_flight) < window:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    path, data = (Path(item[0]), item[1]) if isinstance(item, tuple) else (Path(item), None)
                    seen = functools.partial(first_of.earlier_than, position=next(positions)) if share else None
                    in_flight.append((path, pool.submit(self._load, path, reuse, data, seen)))
                if not in_flight:
                    break
                path, future = in_flight.popleft()
                loaded = future.result()
                if share and not isinstance(loaded, str) and loaded[0] is not None:
                    if loaded[1] in embedded_here:  # a later copy decoded before the first was: one model run
                        loaded = (None, loaded[1], None)
                    embedded_here.add(loaded[1])
                needs_model = not isinstance(loaded, str) and loaded[0] is not None
                if not needs_model and not pending:
                    yield from self._flush([(path, loaded)])  # failures and known files need no batch: report now
                    continue
                pending.append((path, loaded))
                ready += needs_model
                if ready >= self.batch_size:
                    yield from self._flush(pending)
                    pending, ready = [], 0
            if pending:
                yield from self._flush(pending)

    def _flush(self, pending: list) -> Iterator[EmbedResult]:
        arrays = [item[0] for _, item in pending if not isinstance(item, str) and item[0] is not None]
        vectors = iter(self.embed_pixels(np.stack(arrays)) if arrays else [])
        for path, item in pending:
            if isinstance(item, str):
                yield EmbedResult(path, error=item)
            elif item[0] is None:
                yield EmbedResult(path, sha256=item[1], known=True)
            else:
                yield EmbedResult(path, vector=next(vectors), sha256=item[1], signature=item[2])
