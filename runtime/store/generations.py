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
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from filelock import FileLock, Timeout

from edge_search.runtime.errors import (
    IndexBusy,
    IndexCorrupt,
    IndexMismatch,
    IndexMissing,
    StorageError,
    UsageError,
)
from edge_search.runtime.files import FileStamp
from edge_search.runtime.locations import CATALOG_NAME
from edge_search.runtime.store import vector_index as vi
from edge_search.runtime.store.catalog import Catalog, FrameRow, ResultRow, Root
from edge_search.runtime.store.meta import IndexMeta
from edge_search.runtime.store.vector_index import Index

LOCK_NAME = "writer.lock"
HOLDER_NAME = "writer.json"


def refuse_foreign_directory(directory: Path) -> None:
    """An index is written only into a new or empty folder, or one that already holds an index: `--index /` or
    `--index ~/Pictures` must not scatter a catalog among other files."""
    try:
        entries = set(os.listdir(directory))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise UsageError(f"--index {directory} is a file; an index is a folder (choose a new or empty one).") from None
    except OSError as exc:
        raise StorageError(f"Cannot read the index directory {directory}: {exc.strerror}.") from exc
    if entries and not entries & {CATALOG_NAME, LOCK_NAME}:
        raise UsageError(
            f"--index {directory} is a folder with other files in it and no edge-search index: refusing to write an "
            "index there. Choose a new or empty folder (or the folder of an existing index)."
        )


# A filtered set holding at least 1/EXACT_BELOW_SHARE of the index is searched through the graph, a smaller
# one exactly (scored from the catalog's vectors).
EXACT_BELOW_SHARE = 8


# A video is one result, at its best moment; up to this many of its moments are listed, each at least
# MOMENT_GAP_S from those before it and scoring within MOMENT_SLACK of the best (weaker ones are other scenes).
MOMENTS = 3
MOMENT_GAP_S = 2.0
MOMENT_SLACK = 0.05


@dataclass(frozen=True)
class Hit:
    """One result: a photo, or a video at its best-matching moment (`at`, seconds; `key` is that frame's)."""

    rank: int
    score: float
    path: str
    key: int
    taken: str | None = None  # when the photo was taken, wall clock ("2024-06-15 14:03"), where the index knows
    at: float | None = None  # a video: the best moment, seconds from its start
    moments: tuple[tuple[float, float], ...] = ()  # a video: (seconds, score) of its matching moments, best first

    @property
    def kind(self) -> str:
        return "photo" if self.at is None else "video"

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of a result, the same in `query --json` and the HTTP API (`id` is the key)."""
        shape = {"rank": self.rank, "score": round(self.score, 6), "path": self.path, "id": self.key}
        shape = {**shape, "taken": self.taken, "type": self.kind}
        if self.at is not None:
            shape["at"] = round(self.at, 3)
            shape["moments"] = [{"at": round(at, 3), "score": round(score, 6)} for at, score in self.moments]
        return shape


class _Results:
    """Hits gathered from candidates in score order: a video becomes one hit at its best moment, and its later
    frames add moments to it instead of results."""

    def __init__(self, catalog: Catalog, k: int, min_score: float | None, keep: Callable[[str, int], bool] | None):
        self.catalog, self.k, self.min_score, self.keep = catalog, k, min_score, keep
        self._hits: list[Hit] = []
        self._moments: dict[str, list[tuple[float, float]]] = {}

    def add(self, keys: list[int], scores: list[float]) -> bool:
        """Take candidates (best first); True once `k` results are found or the scores fell below `min_score`."""
        paths = self.catalog.paths_for(keys)
        frames = self.catalog.frames_of(keys)
        for key, score in zip(keys, scores):
            if self.min_score is not None and score < self.min_score:
                return True
            path = paths.get(key)
            if path is None or (self.keep is not None and not self.keep(path, key)):
                continue  # removed since the generation was published, or filtered out
            frame = frames.get(key)
            if frame is not None and path in self._moments:
                moments = self._moments[path]
                close = score >= moments[0][1] - MOMENT_SLACK
                if close and len(moments) < MOMENTS and all(abs(frame[1] - at) >= MOMENT_GAP_S for at, _ in moments):
                    moments.append((frame[1], score))
                continue
            if len(self._hits) == self.k:
                continue  # only more moments of the videos listed may follow
            at = None if frame is None else frame[1]
            self._hits.append(Hit(rank=len(self._hits) + 1, score=score, path=path, key=key, at=at))
            if at is not None:
                self._moments[path] = [(at, score)]
        return False

    @property
    def full(self) -> bool:
        return len(self._hits) == self.k

    def hits(self) -> list[Hit]:
        return [
            replace(hit, moments=tuple(self._moments[hit.path])) if hit.at is not None else hit for hit in self._hits
        ]


class Binding(Protocol):
    """What an index records of the model that fills it (a model bundle is one): its embedding identity (a hash
    of what determines the embeddings: weights and preprocessing) and, for people and new index files, where
    it is and its size. A protocol, so the store needs nothing from the model side."""

    @property
    def identity(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    @property
    def bundle_path(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def random_weights(self) -> bool: ...


def check_binding(catalog: Catalog, binding: Binding) -> None:
    """Refuse a model whose embeddings differ from those the catalog holds."""
    meta = catalog.index_meta()
    if meta.bundle_identity is None or meta.bundle_identity == binding.identity:
        return  # a new index, or the same embeddings
    recorded = meta.bundle_identity
    raise IndexMismatch(
        f"The index at {catalog.path.parent} was built with a different model bundle "
        f"({meta.model_id}, identity {recorded[:12]}…, at {meta.bundle_path}) than the one in use "
        f"({binding.model_id}, identity {binding.identity[:12]}…, at {binding.bundle_path}): other weights or "
        "other preprocessing. Embeddings of different models cannot be compared. Use the original bundle "
        "(--model), or index again into a new location: `edge-search index DIR --index NEW_INDEX_DIR --model "
        "BUNDLE` (or delete the old index directory).",
        expected=recorded,
        got=binding.identity,
    )


def _current(catalog: Catalog) -> tuple[str | None, str | None]:
    meta = catalog.index_meta()
    return meta.index_file, meta.index_sha256


def publish_generation(catalog: Catalog, directory: Path, index: Index, **meta: object) -> int:
    """Write `index` as the next generation, commit it (file name + sha256) to the catalog, and only
    then delete older generations and stray temp files. Callers hold the writer lock."""
    current = catalog.index_meta()
    generation = current.generation + 1
    try:
        name, sha = vi.write_atomically(index, directory, generation)
    except OSError as exc:
        raise StorageError(
            f"Cannot write the index file: {exc.strerror or exc}. The previous generation is still served."
        ) from exc
    catalog.set_meta(
        {
            "generation": generation,
            "index_file": name,
            "index_sha256": sha,
            "index_count": len(index),
            "published_version": current.catalog_version,
            **meta,
        }
    )
    for path in vi.stale_files(directory, name):
        with contextlib.suppress(OSError):
            path.unlink()
    vi.fsync_dir(directory)
    return generation


def _build_from_catalog(catalog: Catalog, settings: vi.IndexSettings) -> Index:
    return vi.sync_with(settings.new_index(), catalog.ok_ids(), catalog.vectors)


class IndexWriter:
    """The single writer: binds the bundle, commits embeddings, publishes generations."""

    def __init__(
        self,
        directory: Path,
        binding: Binding | None,
        *,
        precision: str | None,
        settings: vi.IndexSettings | None = None,
    ):
        """`binding` None: a writer that only removes (the index must exist and be bound already)."""
        self.directory = Path(directory)
        self.binding = binding
        self.precision = precision
        self.requested = settings
        self._lock: FileLock | None = None
        self._catalog: Catalog | None = None
        self._index: Index | None = None

    def __enter__(self) -> IndexWriter:
        refuse_foreign_directory(self.directory)
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
            raise IndexBusy(
                f"Another indexer is already writing to {self.directory} ({self._holder()}). "
                "Wait for it to finish; queries keep working meanwhile."
            ) from None
        except OSError as exc:
            raise StorageError(f"Cannot take the writer lock in {self.directory}: {exc.strerror}.") from exc
        try:
            self._write_holder()
            self._catalog = Catalog.open(self.directory, create=True)
            self._bind()
            self._remove_stale()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.directory / HOLDER_NAME).unlink()
            self._lock.release()

    @property
    def catalog(self) -> Catalog:
        """The catalog, for reading while this writer holds the lock (writes go through the verbs below)."""
        if self._catalog is None:
            raise RuntimeError("IndexWriter is used outside its `with` block")
        return self._catalog

    # -- the write verbs: every change to the catalog goes through the single writer -------------
    def remember_roots(self, roots: Iterable[Root]) -> None:
        self.catalog.remember_roots(roots)

    def forget_roots(self, paths: Iterable[bytes]) -> None:
        self.catalog.forget_roots(paths)

    def commit_results(self, rows: Iterable[ResultRow]) -> None:
        """Embeddings and failures of a batch of files, in one durable transaction."""
        self.catalog.upsert_results(rows)

    def commit_video(
        self, path: bytes, stamp: FileStamp, sha: str | None, frames: list[FrameRow] | None, error: str | None
    ) -> None:
        """A video's frames (or why it failed), with its row, in one durable transaction."""
        self.catalog.upsert_video(path, stamp, sha, frames, error)

    def touch(self, rows: Iterable[tuple[bytes, FileStamp]]) -> None:
        """New size/mtime/inode of files whose content is unchanged."""
        self.catalog.touch(rows)

    def record_inodes(self, rows: Iterable[tuple[bytes, str]]) -> None:
        """Which file unchanged rows from before schema 7 were read from."""
        self.catalog.record_inodes(rows)

    def delete_paths(self, paths: Iterable[bytes]) -> int:
        return self.catalog.delete_paths(paths)

    def set_signatures(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Pixel signatures of files indexed before signatures existed (no vector changes: nothing to publish)."""
        self.catalog.set_signatures(rows)

    def set_taken(self, rows: Iterable[tuple[int, float | None, str]]) -> None:
        """When files were taken (no vector changes: nothing to publish)."""
        self.catalog.set_taken(rows)

    def record_decode_limits(self, limits: str) -> None:
        self.catalog.set_meta({"decode_limits": limits})

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
        """Check the bundle, then record it (migrating older meta) and the index settings in force."""
        catalog = self.catalog
        meta = catalog.index_meta()
        if self.binding is None:
            if not meta.bound:
                raise IndexMissing.never_completed(self.directory)
            self.settings, self._rebuild = meta.settings, False
            return
        binding = self.binding
        check_binding(catalog, binding)
        if meta.bound:
            current = meta.settings
            settings = self.requested or current
            if self.requested and self.requested.dim != current.dim:
                raise IndexMismatch(
                    "The index's dimension differs from the bundle's.",
                    expected=str(current.dim),
                    got=str(self.requested.dim),
                )
            self._rebuild = settings != current
        else:
            settings = self.requested or vi.IndexSettings(dim=binding.dim)
            self._rebuild = True
        self.settings = settings
        catalog.write_index_meta(
            replace(
                meta.with_settings(settings),
                bundle_identity=binding.identity,
                bundle_path=binding.bundle_path,
                model_id=binding.model_id,
                precision=self.precision,
                random_weights=binding.random_weights,
            )
        )

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
                self._index = vi.load_verified(self.directory / name, sha or "", view=False)
            except IndexCorrupt:
                self._index = None
        if self._index is None:
            self._index = self.settings.new_index()
        return self._index

    def publish_if_changed(self) -> int:
        """Publish only when the catalog's vectors changed since the last publish (by this run or by
        one killed before it could publish) or the published file is gone; returns the generation in
        force. An index run that found nothing new writes nothing."""
        meta = self.catalog.index_meta()
        published = meta.index_file if meta.published_is_current else None
        if not self._rebuild and published and (self.directory / published).is_file():
            return meta.generation
        return self.publish()

    def publish(self) -> int:
        """Bring the index in line with the catalog and publish it as a new generation; returns it."""
        index = vi.sync_with(self._working_index(), self.catalog.ok_ids(), self.catalog.vectors)
        return publish_generation(
            self.catalog, self.directory, index, last_indexed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z")
        )


class IndexReader:
    """Lock-free read access to the last committed generation."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.catalog = Catalog.open(self.directory, create=False)
        self._notes: list[str] = []  # what this reader repaired, until a result carries it: `take_notes`
        self._notes_lock = threading.Lock()
        self._index: Index | None = None
        self._generation = -1

    def close(self) -> None:
        self.catalog.close()

    @property
    def meta(self) -> IndexMeta:
        return self.catalog.index_meta()

    def take_notes(self) -> list[str]:
        """What this reader did that a person should hear of (an index file rebuilt, republished) since the last
        call: each note goes into exactly one result, even with threads sharing the reader."""
        with self._notes_lock:
            notes, self._notes = self._notes, []
        return notes

    def _note(self, note: str) -> None:
        with self._notes_lock:
            self._notes.append(note)

    def index(self) -> Index:
        """The last committed generation; a long-lived reader picks up newer ones as they are published."""
        generation = self.meta.generation
        if self._index is None or generation != self._generation:
            self._index = self._open_index()
            self._generation = generation
        return self._index

    def _open_index(self) -> Index:
        meta = self.meta
        if not meta.bound:
            raise IndexMissing.never_completed(self.directory)
        problem = None
        for _attempt in range(3):
            name, sha = _current(self.catalog)
            if not name:
                break
            try:
                return vi.load_verified(self.directory / name, sha or "", view=True)
            except IndexCorrupt as exc:
                problem = str(exc)
                if _current(self.catalog)[0] != name:
                    continue  # a writer published a new generation meanwhile: read that one
                break
        self._note(
            f"{problem} Rebuilt the index from the catalog."
            if problem
            else "The first index is still running: this searched what it has committed so far."
        )
        index = _build_from_catalog(self.catalog, meta.settings)
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
            writer_catalog = Catalog.open(self.directory, create=True)
            try:
                index = _build_from_catalog(writer_catalog, writer_catalog.index_meta().settings)
                generation = publish_generation(writer_catalog, self.directory, index)
                self._note(f"Republished the index file as generation {generation}.")
            finally:
                writer_catalog.close()
        except (OSError, StorageError, IndexCorrupt):
            pass
        finally:
            lock.release()

    def search_among(
        self,
        query: np.ndarray,
        keys: np.ndarray,
        k: int,
        min_score: float | None = None,
        keep: Callable[[str, int], bool] | None = None,
    ) -> list[Hit]:
        """The `k` best of `keys` alone (a date range's photos), so `k` hits whenever `k` of them pass `keep`. A
        small set is scored exactly from the catalog's vectors; one holding most of the index is searched through
        the graph, which then finds the `k` best quickly (`search` with `keys` as its filter)."""
        if len(keys) == 0:
            return []
        if len(keys) * EXACT_BELOW_SHARE >= len(self.index()):
            allowed = set(keys.tolist())
            return self.search(query, k, min_score, lambda p, key: key in allowed and (keep is None or keep(p, key)))
        unit = query / max(float(np.linalg.norm(query)), 1e-12)
        found_keys, found_scores = [], []
        for chunk_keys, vectors in self.catalog.vectors(keys.tolist()):
            norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
            found_keys.append(chunk_keys)
            found_scores.append((vectors @ unit) / norms)
        all_keys, all_scores = np.concatenate(found_keys), np.concatenate(found_scores)
        order = np.argsort(-all_scores, kind="stable")
        results = _Results(self.catalog, k, min_score, keep)
        step = max(4 * k, 64)
        for start in range(0, len(order), step):
            part = order[start : start + step]
            if results.add(all_keys[part].tolist(), all_scores[part].tolist()) or results.full:
                break
        return results.hits()

    def search(
        self, query: np.ndarray, k: int, min_score: float | None = None, keep: Callable[[str, int], bool] | None = None
    ) -> list[Hit]:
        """The `k` best hits at or above `min_score` for which `keep(path, key)` holds, best first.

        With a filter, candidates are fetched in growing rounds until `k` pass or the index is exhausted.
        """
        index = self.index()
        total = len(index)
        videos = self.catalog.has_frames()  # frames of one video may crowd the first candidates
        want = k if keep is None and not videos else min(total, max(4 * k, 64))
        while True:
            keys, scores = vi.search(index, query, want)
            results = _Results(self.catalog, k, min_score, keep)
            ended = results.add([int(key) for key in keys], [float(score) for score in scores])
            if ended or results.full or want >= total:
                return results.hits()
            want = min(total, want * 4)
