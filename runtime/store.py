"""The index directory: catalog (truth) + usearch generations (derived) + the writer lock.

Writers hold `writer.lock` (one at a time; a second exits at once naming the holder). Readers take
no lock: they read the generation the catalog last committed, and if its file is missing or fails
its hash they rebuild it from the catalog's embeddings (no re-embedding), in memory if another
process is writing, on disk otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from . import vector_index as vi  # first: it imports onnxruntime before usearch
from .vector_index import Index
from .bundle import Bundle
from .catalog import Catalog
from .errors import IndexBusy, IndexCorrupt, IndexMismatch, StorageError

LOCK_NAME = "writer.lock"
HOLDER_NAME = "writer.json"


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    path: str
    key: int


def settings_from_meta(meta: dict[str, str]) -> vi.IndexSettings:
    return vi.IndexSettings(
        dim=int(meta["dim"]),
        dtype=meta.get("vector_dtype", vi.DEFAULT_DTYPE),
        connectivity=int(meta.get("connectivity", vi.DEFAULT_CONNECTIVITY)),
        expansion_add=int(meta.get("expansion_add", vi.DEFAULT_EXPANSION_ADD)),
        expansion_search=int(meta.get("expansion_search", vi.DEFAULT_EXPANSION_SEARCH)),
    )


def check_bundle(catalog: Catalog, bundle: Bundle) -> None:
    """Refuse a bundle other than the one the catalog was built with."""
    recorded = catalog.get_meta("bundle_sha256")
    if recorded is None or recorded == bundle.identity:
        return
    meta = catalog.meta()
    raise IndexMismatch(
        f"The index at {catalog.path.parent} was built with a different model bundle "
        f"({meta.get('model_id')}, manifest {recorded[:12]}…, at {meta.get('bundle_path')}) than the one in use "
        f"({bundle.manifest.model_id}, manifest {bundle.identity[:12]}…, at {bundle.root}). Embeddings of "
        "different bundles cannot be compared. Use the original bundle (--model), or index again into a new "
        "location: `edge-search index DIR --index NEW_INDEX_DIR --model BUNDLE` (or delete the old index directory).",
        expected=recorded,
        got=bundle.identity,
    )


def _current(catalog: Catalog) -> tuple[str | None, str | None]:
    meta = catalog.meta()
    return meta.get("index_file"), meta.get("index_sha256")


def publish_generation(catalog: Catalog, directory: Path, index: Index, **meta: object) -> int:
    """Write `index` as the next generation, commit it (file name + sha256) to the catalog, and only
    then delete older generations and stray temp files. Callers hold the writer lock."""
    generation = int(catalog.get_meta("generation") or 0) + 1
    try:
        name, sha = vi.write_atomically(index, directory, generation)
    except OSError as exc:
        raise StorageError(f"Cannot write the index file: {exc.strerror or exc}. The previous generation is still served.") from exc
    catalog.set_meta({"generation": generation, "index_file": name, "index_sha256": sha, "index_count": len(index), **meta})
    for path in vi.stale_files(directory, name):
        with contextlib.suppress(OSError):
            path.unlink()
    vi.fsync_dir(directory)
    return generation


def _build_from_catalog(catalog: Catalog, settings: vi.IndexSettings) -> Index:
    return vi.sync_with(settings.new_index(), catalog.ok_ids(), catalog.vectors)


class IndexWriter:
    """The single writer: binds the bundle, commits embeddings, publishes generations."""

    def __init__(self, directory: Path, bundle: Bundle, *, precision: str, settings: vi.IndexSettings | None = None):
        self.directory = Path(directory)
        self.bundle = bundle
        self.precision = precision
        self.requested = settings
        self._lock: FileLock | None = None
        self.catalog: Catalog | None = None
        self._index: Index | None = None

    def __enter__(self) -> "IndexWriter":
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"Cannot create the index directory {self.directory}: {exc.strerror}.") from exc
        if not os.access(self.directory, os.W_OK):
            raise StorageError(
                f"The index directory {self.directory} is not writable; indexing needs write access "
                "(queries still work on it)."
            )
        self._lock = FileLock(str(self.directory / LOCK_NAME), timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            raise IndexBusy(f"Another indexer is already writing to {self.directory} ({self._holder()}). "
                            "Wait for it to finish; queries keep working meanwhile.") from None
        except OSError as exc:
            raise StorageError(f"Cannot take the writer lock in {self.directory}: {exc.strerror}.") from exc
        try:
            self._write_holder()
            self.catalog = Catalog.open(self.directory, create=True)
            self._bind()
            self._remove_stale()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.catalog is not None:
            self.catalog.close()
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.directory / HOLDER_NAME).unlink()
            self._lock.release()

    def _holder(self) -> str:
        try:
            info = json.loads((self.directory / HOLDER_NAME).read_text())
            return f"pid {info['pid']} on {info['host']}, running since {info['started']}"
        except (OSError, ValueError, KeyError):
            return "holder unknown"

    def _write_holder(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        with contextlib.suppress(OSError):
            (self.directory / HOLDER_NAME).write_text(json.dumps(info))

    def _bind(self) -> None:
        catalog = self.catalog
        check_bundle(catalog, self.bundle)
        meta = catalog.meta()
        manifest = self.bundle.manifest
        if "dim" in meta:
            current = settings_from_meta(meta)
            settings = self.requested or current
            if self.requested and self.requested.dim != current.dim:
                raise IndexMismatch("The index's dimension differs from the bundle's.", expected=str(current.dim), got=str(self.requested.dim))
            self._rebuild = settings != current
        else:
            settings = self.requested or vi.IndexSettings(dim=manifest.embedding_dim)
            self._rebuild = True
        self.settings = settings
        catalog.set_meta({
            "bundle_sha256": self.bundle.identity,
            "bundle_path": str(self.bundle.root.resolve()),
            "model_id": manifest.model_id,
            "dim": settings.dim,
            "precision": self.precision,
            "random_weights": int(manifest.random_weights),
            "vector_dtype": settings.dtype,
            "connectivity": settings.connectivity,
            "expansion_add": settings.expansion_add,
            "expansion_search": settings.expansion_search,
        })

    def _remove_stale(self) -> None:
        keep, _ = _current(self.catalog)
        for path in vi.stale_files(self.directory, keep):
            with contextlib.suppress(OSError):
                path.unlink()

    def _working_index(self) -> Index:
        if self._index is not None:
            return self._index
        name, sha = _current(self.catalog)
        if name and not self._rebuild:
            try:
                self._index = vi.load_verified(self.directory / name, sha, view=False)
            except IndexCorrupt:
                self._index = None
        if self._index is None:
            self._index = self.settings.new_index()
        return self._index

    def publish(self) -> int:
        """Bring the index in line with the catalog and publish it as a new generation; returns it."""
        index = vi.sync_with(self._working_index(), self.catalog.ok_ids(), self.catalog.vectors)
        return publish_generation(self.catalog, self.directory, index,
                                  last_indexed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


class IndexReader:
    """Lock-free read access to the last committed generation."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.catalog = Catalog.open(self.directory, create=False)
        self.notes: list[str] = []
        self._index: Index | None = None

    def close(self) -> None:
        self.catalog.close()

    @property
    def meta(self) -> dict[str, str]:
        return self.catalog.meta()

    def index(self) -> Index:
        if self._index is None:
            self._index = self._open_index()
        return self._index

    def _open_index(self) -> Index:
        meta = self.meta
        if "dim" not in meta:
            raise IndexCorrupt(f"The index at {self.directory} was never completed. Run `edge-search index DIR` again.")
        problem = "no generation has been published yet"
        for _attempt in range(3):
            name, sha = _current(self.catalog)
            if not name:
                break
            try:
                return vi.load_verified(self.directory / name, sha, view=True)
            except IndexCorrupt as exc:
                problem = str(exc)
                if _current(self.catalog)[0] != name:
                    continue  # a writer published a new generation meanwhile: read that one
                break
        self.notes.append(f"{problem} Rebuilt the index from the catalog.")
        index = _build_from_catalog(self.catalog, settings_from_meta(meta))
        self._repair()
        return index

    def _repair(self) -> None:
        """Republish from the catalog if no writer is running (best effort, never blocks)."""
        if not os.access(self.directory, os.W_OK):
            return
        lock = FileLock(str(self.directory / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except (Timeout, OSError):
            return
        try:
            meta = self.meta
            writer_catalog = Catalog.open(self.directory, create=True)
            try:
                index = _build_from_catalog(writer_catalog, settings_from_meta(meta))
                generation = publish_generation(writer_catalog, self.directory, index)
                self.notes.append(f"Republished the index file as generation {generation}.")
            finally:
                writer_catalog.close()
        except (OSError, StorageError, IndexCorrupt):
            pass
        finally:
            lock.release()

    def search(self, query: np.ndarray, k: int, min_score: float | None = None) -> list[Hit]:
        keys, scores = vi.search(self.index(), query, k)
        paths = self.catalog.paths_for(keys)
        hits = []
        for key, score in zip(keys, scores):
            if min_score is not None and score < min_score:
                continue
            path = paths.get(int(key))
            if path is None:
                continue  # removed since the generation was published
            hits.append(Hit(rank=len(hits) + 1, score=float(score), path=path, key=int(key)))
        return hits
