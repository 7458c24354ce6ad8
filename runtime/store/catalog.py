"""The SQLite catalog: the source of truth, one row per photo or video file, the frames embedded from each video,
the roots a user indexed (with their exclude patterns) and a `meta` table (read and written as `IndexMeta`).

Paths are stored as the raw bytes of the file system (`os.fsencode`), so names that are not valid
UTF-8 survive unchanged. A photo's row id is its usearch key; a video's row holds no embedding, and each of its
frames is keyed FRAME_KEYS + the frame's id (AUTOINCREMENT both: a key is never reused). Deleting a file's row
deletes its frames (a trigger), so every path that forgets a file forgets its frames too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edge_search.runtime.errors import EdgeSearchError, IndexCorrupt, IndexMissing, StorageError, UsageError
from edge_search.runtime.files import FileStamp, storable_ns
from edge_search.runtime.locations import CATALOG_NAME
from edge_search.runtime.store.meta import IndexMeta

SCHEMA_VERSION = 7
# a reader copes with every version; a writer migrates older ones
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, SCHEMA_VERSION)
# version -> the statements that bring a catalog of that version to the next. A writer runs each step in one
# transaction together with the new version number (SQLite's journal: a crash mid-step leaves the previous
# version intact, and the next writer resumes from there); nothing is re-embedded.
MIGRATIONS = {
    1: (  # 2 remembered the indexed folders, and looks embeddings up by content
        "CREATE TABLE IF NOT EXISTS roots (path BLOB PRIMARY KEY, excludes TEXT NOT NULL, "
        "include_hidden INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256)",
    ),
    2: ("ALTER TABLE roots ADD COLUMN follow_links INTEGER NOT NULL DEFAULT 0",),
    3: ("ALTER TABLE files ADD COLUMN signature BLOB",),  # filled in by the next `index` (no re-embedding)
    4: (  # 5 knows when each photo was taken (jobs/dates.py), filled in by the next `index` (no re-embedding)
        "ALTER TABLE files ADD COLUMN taken REAL",
        "ALTER TABLE files ADD COLUMN taken_from TEXT",
        "CREATE INDEX IF NOT EXISTS files_taken ON files (taken)",
    ),
    5: (  # 6 indexes videos: a video's row has kind 'video' and its frames their own table (jobs/videos.py)
        "ALTER TABLE files ADD COLUMN kind TEXT NOT NULL DEFAULT 'photo'",
        "CREATE TABLE IF NOT EXISTS frames (id INTEGER PRIMARY KEY AUTOINCREMENT, file_id INTEGER NOT NULL, "
        "at REAL NOT NULL, embedding BLOB NOT NULL, thumbnail BLOB NOT NULL)",
        "CREATE INDEX IF NOT EXISTS frames_file ON frames (file_id)",
        "CREATE TRIGGER IF NOT EXISTS files_forget_frames AFTER DELETE ON files "
        "BEGIN DELETE FROM frames WHERE file_id = old.id; END",
    ),
    # 7 knows which file (device:inode) each row was read from: the service serves only that file; the next
    # `index` records it for rows from before (nothing is embedded again)
    6: ("ALTER TABLE files ADD COLUMN inode TEXT",),
}
# A video frame's usearch key is FRAME_KEYS + its row id in `frames`: far above any file's id, within usearch's
# uint64 keys and SQLite's integers.
FRAME_KEYS = 1 << 40


class ResultRow(NamedTuple):
    """One file's outcome, as `upsert_results` stores it."""

    path: bytes
    size: int
    mtime_ns: int
    sha256: str | None
    vector: np.ndarray | None  # a unit vector; None: it failed, with `error`
    error: str | None
    signature: bytes | None  # the pixel signature dupes checks
    inode: str | None = None  # "device:inode" (files.FileStamp)


# One embedded moment of a video: (seconds from its start, unit vector, JPEG thumbnail)
FrameRow = tuple[float, np.ndarray, bytes]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    embedding BLOB,
    indexed_at REAL NOT NULL,
    signature BLOB,
    taken REAL,
    taken_from TEXT,
    kind TEXT NOT NULL DEFAULT 'photo',
    inode TEXT
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
CREATE INDEX IF NOT EXISTS files_taken ON files (taken);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL,
    at REAL NOT NULL,
    embedding BLOB NOT NULL,
    thumbnail BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS frames_file ON frames (file_id);
CREATE TRIGGER IF NOT EXISTS files_forget_frames AFTER DELETE ON files
BEGIN DELETE FROM frames WHERE file_id = old.id; END;
CREATE TABLE IF NOT EXISTS roots (
    path BLOB PRIMARY KEY,
    excludes TEXT NOT NULL,
    include_hidden INTEGER NOT NULL,
    follow_links INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class FileState:
    id: int
    path: bytes
    size: int
    mtime_ns: int
    status: str
    sha256: str | None = None
    error: str | None = None
    inode: str | None = None  # "device:inode"; None in a row from before schema 7, until the next index


@dataclass(frozen=True)
class Root:
    """A folder (or file) the user indexed, remembered with how it was walked."""

    path: str
    excludes: tuple[str, ...] = ()
    include_hidden: bool = False
    follow_links: bool = False  # symlinks that leave the indexed folders are followed (off: skipped, reported)


@dataclass(frozen=True)
class RootRules:
    """How to walk the folders of one `index` call; None: what each folder remembered from earlier runs (a new
    folder: Root's defaults). Given: it replaces what was remembered."""

    excludes: tuple[str, ...] | None = None
    include_hidden: bool | None = None
    follow_links: bool | None = None

    def apply(self, root: Root, remembered: Root | None) -> Root:
        base = remembered or root
        return Root(
            root.path,
            self.excludes if self.excludes is not None else base.excludes,
            self.include_hidden if self.include_hidden is not None else base.include_hidden,
            self.follow_links if self.follow_links is not None else base.follow_links,
        )


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str


def is_frame_key(key: int) -> bool:
    """Whether a usearch key names a video frame (else a photo)."""
    return int(key) >= FRAME_KEYS


def encode_path(path: Path | str) -> bytes:
    return os.fsencode(os.path.abspath(path))


def decode_path(raw: bytes) -> str:
    """A str that round-trips to the same bytes (undecodable bytes become surrogate escapes)."""
    return os.fsdecode(raw)


def _storage_error(exc: sqlite3.Error, action: str) -> StorageError | IndexCorrupt:
    text = str(exc)
    if "full" in text or "readonly" in text or "read-only" in text or "unable to open" in text or "I/O" in text:
        return StorageError(f"Cannot {action}: {text}.")
    return IndexCorrupt(f"The catalog cannot be used ({text}). Run `edge-search verify` for details.")


class Catalog:
    def __init__(self, connection: sqlite3.Connection, path: Path):
        self.db = connection
        self.path = path

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def path_in(index_dir: Path) -> Path:
        return Path(index_dir) / CATALOG_NAME

    @classmethod
    def open(cls, index_dir: Path, *, create: bool) -> Catalog:
        path = cls.path_in(index_dir)
        if not path.exists():
            if not create:
                raise IndexMissing(
                    f"No index at {index_dir} yet. Build one with `edge-search index DIR` "
                    "(or point --index / EDGE_SEARCH_INDEX at an existing one)."
                )
            try:
                Path(index_dir).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"Cannot create the index directory {index_dir}: {exc.strerror}.") from exc
        try:
            if create:
                db = sqlite3.connect(path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                catalog = cls(db, path)
                if catalog.get_meta("schema_version") is not None:
                    catalog._check_schema()
                    catalog._migrate()
                db.executescript(_SCHEMA)
                catalog.set_meta({"schema_version": SCHEMA_VERSION})
            else:
                catalog = cls(cls._open_reader(path), path)
            catalog._check_schema()
            return catalog
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # killed while the very first run was creating the catalog
                raise IndexMissing.never_completed(index_dir) from None
            raise _storage_error(exc, f"open the catalog {path}") from exc
        except sqlite3.DatabaseError as exc:
            raise _storage_error(exc, f"open the catalog {path}") from exc

    @staticmethod
    def _open_reader(path: Path) -> sqlite3.Connection:
        """Readers never write, but WAL needs the -shm file; fall back to immutable mode where we cannot.
        One thread uses a reader at a time; it may be closed from another (`Library.close`), hence
        check_same_thread=False (the sqlite3 module serialises calls on a connection)."""
        try:
            db = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("SELECT count(*) FROM meta").fetchone()
            return db
        except sqlite3.OperationalError:
            db = sqlite3.connect(
                f"file:{path}?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False
            )
            db.execute("SELECT count(*) FROM meta").fetchone()
            return db

    def _check_schema(self) -> None:
        version = self.get_meta("schema_version")
        if version is None:  # the tables were being created when the first run was killed
            raise IndexMissing.never_completed(self.path.parent)
        if int(version) > SCHEMA_VERSION:
            raise IndexCorrupt(
                f"The catalog {self.path} has schema version {version}, made by a newer edge-search; this one "
                f"reads up to {SCHEMA_VERSION}. Upgrade edge-search (nothing needs to be reindexed)."
            )
        if int(version) not in READABLE_VERSIONS:
            raise IndexCorrupt(f"The catalog {self.path} has schema version {version}, which no edge-search made.")

    def _migrate(self) -> None:
        """Bring an older catalog to SCHEMA_VERSION in place, each step one transaction (nothing re-embedded)."""
        version = int(self.get_meta("schema_version") or SCHEMA_VERSION)
        while version < SCHEMA_VERSION:
            with self.transaction():
                for statement in MIGRATIONS[version]:
                    self.db.execute(statement)
                version += 1
                self._put_meta({"schema_version": version})

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta ----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def index_meta(self) -> IndexMeta:
        return IndexMeta.from_rows(self.meta())

    def write_index_meta(self, meta: IndexMeta) -> None:
        with self.transaction():
            self._put_meta(meta.to_rows())

    def set_meta(self, values: Mapping[str, object]) -> None:
        """Atomically set several meta values (one durable transaction)."""
        with self.transaction():
            self._put_meta(values)

    def _put_meta(self, values: Mapping[str, object]) -> None:
        self.db.executemany(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            [(k, str(v)) for k, v in values.items()],
        )

    # -- transactions --------------------------------------------------------------------------
    def transaction(self):
        catalog = self

        class _Tx:
            def __enter__(self):
                catalog.db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                try:
                    if exc_type is None:
                        catalog.db.execute("COMMIT")
                    else:
                        catalog.db.execute("ROLLBACK")
                except sqlite3.Error as err:
                    if catalog.db.in_transaction:
                        catalog.db.execute("ROLLBACK")
                    raise _storage_error(err, "commit to the catalog") from err
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(exc, "write to the catalog") from exc
                return False

        return _Tx()

    # -- files ---------------------------------------------------------------------------------
    def states(self) -> dict[bytes, FileState]:
        rows = self.db.execute(f"SELECT id, path, size, mtime_ns, status, sha256, error, {self._inode} FROM files")
        return {row[1]: FileState(*row) for row in rows}

    def _version(self) -> int:
        return int(self.get_meta("schema_version") or SCHEMA_VERSION)

    @property
    def _inode(self) -> str:
        """The inode column where the catalog has it (schema 7), else NULL (an older catalog read as it is)."""
        return "inode" if self._version() >= 7 else "NULL"

    def record_inodes(self, rows: Iterable[tuple[bytes, str]]) -> None:
        """Which file (device:inode) unchanged rows from before schema 7 were read from, in one transaction."""
        with self.transaction():
            self.db.executemany("UPDATE files SET inode=? WHERE path=?", [(i, p) for p, i in rows])

    def ok_ids_by_sha256(self) -> dict[str, int]:
        """Content hash -> a photo's row embedded from that content (what a moved or touched file can reuse)."""
        return {
            row[0]: row[1]
            for row in self.db.execute(
                "SELECT sha256, id FROM files WHERE status='ok' AND sha256 IS NOT NULL AND embedding IS NOT NULL"
            )
        }

    def vector(self, key: int) -> np.ndarray | None:
        """The embedding under a usearch key: a photo's, or a video frame's."""
        if is_frame_key(key):
            row = self._frames_query("SELECT embedding FROM frames WHERE id=?", (int(key) - FRAME_KEYS,))
        else:
            row = self.db.execute(
                "SELECT embedding FROM files WHERE id=? AND status='ok' AND embedding IS NOT NULL", (int(key),)
            ).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()

    def embedding_of_content(self, sha: str) -> tuple[np.ndarray, bytes | None] | None:
        """(embedding, pixel signature) of a row with this content hash (identical files share both), or None."""
        signature = "signature" if self._version() >= 4 else "NULL"  # an older catalog, read as it is
        row = self.db.execute(
            f"SELECT embedding, {signature} FROM files WHERE sha256=? AND status='ok' AND embedding IS NOT NULL "
            f"ORDER BY {signature} IS NULL LIMIT 1",
            (sha,),
        ).fetchone()
        return None if row is None else (np.frombuffer(row[0], dtype=np.float32).copy(), row[1])

    def signatures(self, ids: Iterable[int]) -> dict[int, bytes | None]:
        """id -> pixel signature (None: not made yet, or a catalog from before signatures)."""
        wanted = sorted(int(i) for i in ids)
        found: dict[int, bytes | None] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            try:
                rows = self.db.execute(
                    f"SELECT id, signature FROM files WHERE id IN ({','.join('?' * len(part))})", part
                ).fetchall()
            except sqlite3.OperationalError:  # a catalog from before signatures, opened read-only
                rows = [(i, None) for i in part]
            found.update(rows)
        return found

    def unsigned(self) -> list[tuple[int, str]]:
        """(id, path) of embedded files without a pixel signature (indexed before signatures existed)."""
        rows = self.db.execute(
            "SELECT id, path FROM files WHERE status='ok' AND signature IS NULL AND embedding IS NOT NULL ORDER BY id"
        )
        return [(key, decode_path(path)) for key, path in rows]

    def set_signatures(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Pixel signatures for existing rows (their embeddings and keys unchanged), in one transaction."""
        with self.transaction():
            self.db.executemany("UPDATE files SET signature=? WHERE id=?", [(sig, int(key)) for key, sig in rows])

    def undated(self) -> list[tuple[int, str, int]]:
        """(id, path, mtime_ns) of embedded files without a date (new this run, or indexed before dates existed)."""
        rows = self.db.execute(  # a date found unknown (taken_from 'unknown') is not looked for again
            "SELECT id, path, mtime_ns FROM files WHERE status='ok' AND taken IS NULL AND taken_from IS NULL "
            "ORDER BY id"
        )
        return [(key, decode_path(path), mtime_ns) for key, path, mtime_ns in rows]

    def set_taken(self, rows: Iterable[tuple[int, float | None, str]]) -> None:
        """When existing rows' photos were taken (their embeddings and keys unchanged), in one transaction."""
        with self.transaction():
            self.db.executemany(
                "UPDATE files SET taken=?, taken_from=? WHERE id=?", [(t, f, int(k)) for k, t, f in rows]
            )

    def keys_taken_between(self, after: float | None, before: float | None) -> np.ndarray:
        """The keys of photos, and of the frames of videos, taken at or after `after` and before `before` (None:
        unbounded)."""
        self._require_dates()
        span = (-1e18 if after is None else after, 1e18 if before is None else before)
        rows = self.db.execute(
            "SELECT id FROM files WHERE status='ok' AND embedding IS NOT NULL AND taken IS NOT NULL "
            "AND taken >= ? AND taken < ? ORDER BY id",
            span,
        )
        keys = [row[0] for row in rows]
        if self._has_videos():
            rows = self.db.execute(
                "SELECT ? + frames.id FROM frames JOIN files ON files.id = frames.file_id WHERE files.status='ok' "
                "AND files.taken IS NOT NULL AND files.taken >= ? AND files.taken < ? ORDER BY frames.id",
                (FRAME_KEYS, *span),
            )
            keys.extend(row[0] for row in rows)
        return np.array(keys, dtype=np.uint64)

    def taken_of(self, ids: Iterable[int]) -> dict[int, tuple[float, str]]:
        """key -> (when taken, "exif", "file" or "video") for the keys that have a date (a frame: its video's)."""
        keys = [int(i) for i in ids]
        if not keys or not self._has_dates():
            return {}
        file_of = self._file_ids(keys)
        found: dict[int, tuple[float, str]] = {}
        ids = sorted(set(file_of.values()))
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"SELECT id, taken, taken_from FROM files WHERE taken IS NOT NULL AND id IN ({marks})", part
            )
            found.update((key, (taken, source)) for key, taken, source in rows)
        return {key: found[file_id] for key, file_id in file_of.items() if file_id in found}

    # -- videos --------------------------------------------------------------------------------
    def _has_videos(self) -> bool:
        return self._version() >= 6

    def _frames_query(self, sql: str, parameters: tuple) -> tuple | None:
        """One row from the frames table (None too for a catalog from before videos)."""
        if not self._has_videos():
            return None
        return self.db.execute(sql, parameters).fetchone()

    def frames_of(self, keys: Iterable[int]) -> dict[int, tuple[int, float]]:
        """frame key -> (its video's file id, seconds from the start), for the keys that are frames."""
        ids = sorted({int(k) - FRAME_KEYS for k in keys if is_frame_key(k)})
        if not ids or not self._has_videos():
            return {}
        found: dict[int, tuple[int, float]] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self.db.execute(
                f"SELECT id, file_id, at FROM frames WHERE id IN ({','.join('?' * len(part))})", part
            )
            found.update((FRAME_KEYS + frame, (file_id, at)) for frame, file_id, at in rows)
        return found

    def _file_ids(self, keys: list[int]) -> dict[int, int]:
        """key -> the file row it belongs to (a photo's key is its row; a frame's, its video's row)."""
        frames = self.frames_of(keys)
        return {key: frames[key][0] if key in frames else key for key in keys if not is_frame_key(key) or key in frames}

    def frame_thumbnail(self, key: int) -> bytes | None:
        """The JPEG stored for a video frame's key (None: not a frame)."""
        if not is_frame_key(key):
            return None
        row = self._frames_query("SELECT thumbnail FROM frames WHERE id=?", (int(key) - FRAME_KEYS,))
        return None if row is None else row[0]

    def video_ids_by_sha256(self) -> dict[str, int]:
        """Content hash -> a video's row whose frames were embedded (what a moved or touched video reuses)."""
        if not self._has_videos():
            return {}
        rows = self.db.execute("SELECT sha256, id FROM files WHERE status='ok' AND kind='video' AND sha256 IS NOT NULL")
        return dict(rows.fetchall())

    def frames_of_content(self, sha: str) -> list[FrameRow]:
        """The embedded frames of a video with this content hash (empty: none)."""
        row = self.db.execute(
            "SELECT id FROM files WHERE sha256=? AND status='ok' AND kind='video' LIMIT 1", (sha,)
        ).fetchone()
        if row is None:
            return []
        rows = self.db.execute("SELECT at, embedding, thumbnail FROM frames WHERE file_id=? ORDER BY at", (row[0],))
        return [(at, np.frombuffer(vector, dtype=np.float32).copy(), thumb) for at, vector, thumb in rows]

    def has_frames(self) -> bool:
        return self._frames_query("SELECT 1 FROM frames LIMIT 1", ()) is not None

    def count_videos(self) -> tuple[int, int]:
        """(videos indexed, frames embedded from them)."""
        if not self._has_videos():
            return 0, 0
        videos = self.db.execute("SELECT count(*) FROM files WHERE status='ok' AND kind='video'").fetchone()[0]
        return videos, self.db.execute("SELECT count(*) FROM frames").fetchone()[0]

    def upsert_video(
        self, path: bytes, stamp: FileStamp, sha: str | None, frames: list[FrameRow] | None, error: str | None
    ) -> None:
        """One video's outcome in one transaction: its row (kind 'video', no embedding of its own) and its frames,
        replacing what the path held; `frames` None: it failed, with `error`."""
        with self.transaction():
            self.db.execute("DELETE FROM files WHERE path=?", (path,))  # the trigger forgets its old frames
            status = "ok" if frames else "failed"
            cursor = self.db.execute(
                "INSERT INTO files (path, size, mtime_ns, sha256, status, error, embedding, indexed_at, kind, inode) "
                "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, 'video', ?)",
                (path, stamp.size, stamp.mtime_ns, sha, status, None if frames else error, time.time(), stamp.inode),
            )
            if frames:
                self.db.executemany(
                    "INSERT INTO frames (file_id, at, embedding, thumbnail) VALUES (?, ?, ?, ?)",
                    [
                        (cursor.lastrowid, float(at), np.asarray(v, dtype=np.float32).tobytes(), thumb)
                        for at, v, thumb in frames
                    ],
                )
            self._bump_version()

    def _has_dates(self) -> bool:
        return self._version() >= 5

    def _require_dates(self) -> None:
        if not self._has_dates():
            raise UsageError(
                "This index was made before edge-search recorded when photos were taken: run `edge-search index` "
                "once (nothing is embedded again), then filter by date."
            )

    def sha256_of(self, key: int) -> str | None:
        """The content hash of the file under a key (a frame: its video's)."""
        file_id = self._file_ids([int(key)]).get(int(key))
        if file_id is None:
            return None
        row = self.db.execute("SELECT sha256 FROM files WHERE id=?", (file_id,)).fetchone()
        return row[0] if row else None

    def touch(self, rows: Iterable[tuple[bytes, FileStamp]]) -> None:
        """New (size, mtime_ns, inode) for files whose content is unchanged: same key, same embedding."""
        with self.transaction():
            self.db.executemany(  # the date goes too: a date from the modification time follows it (`dates.fill_in`)
                "UPDATE files SET size=?, mtime_ns=?, inode=?, taken=NULL, taken_from=NULL WHERE path=?",
                [(stamp.size, stamp.mtime_ns, stamp.inode, p) for p, stamp in rows],
            )

    def failures(self) -> list[Failure]:
        rows = self.db.execute("SELECT path, error FROM files WHERE status='failed' ORDER BY path")
        return [Failure(decode_path(path), error or "unknown error") for path, error in rows]

    # -- roots ---------------------------------------------------------------------------------
    def roots(self) -> list[Root]:
        try:
            rows = self.db.execute(
                "SELECT path, excludes, include_hidden, follow_links FROM roots ORDER BY path"
            ).fetchall()
        except sqlite3.OperationalError:  # an older catalog opened read-only
            try:  # version 2: links were never followed out
                query = "SELECT path, excludes, include_hidden FROM roots ORDER BY path"
                rows = [(*row, 0) for row in self.db.execute(query).fetchall()]
            except sqlite3.OperationalError:  # version 1: no folders remembered yet
                rows = []
        return [
            Root(decode_path(path), tuple(json.loads(excludes)), bool(hidden), bool(follow))
            for path, excludes, hidden, follow in rows
        ]

    def remember_roots(self, roots: Iterable[Root]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT INTO roots (path, excludes, include_hidden, follow_links) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET excludes=excluded.excludes, include_hidden=excluded.include_hidden, "
                "follow_links=excluded.follow_links",
                [
                    (encode_path(r.path), json.dumps(list(r.excludes)), int(r.include_hidden), int(r.follow_links))
                    for r in roots
                ],
            )

    def forget_roots(self, paths: Iterable[bytes]) -> None:
        with self.transaction():
            self.db.executemany("DELETE FROM roots WHERE path=?", [(p,) for p in paths])

    def upsert_results(self, rows: Iterable[ResultRow]) -> None:
        """(path, size, mtime_ns, sha256, vector or None, error or None, signature or None) per file, in one
        transaction.

        A changed file gets a new id (the old key disappears from the index), so a stale vector is
        never served under the new content.
        """
        now = time.time()
        with self.transaction():
            for row in map(lambda given: ResultRow(*given), rows):
                self.db.execute("DELETE FROM files WHERE path=?", (row.path,))
                self.db.execute(
                    "INSERT INTO files (path, size, mtime_ns, sha256, status, error, embedding, indexed_at, "
                    "signature, inode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row.path,
                        row.size,
                        storable_ns(row.mtime_ns),
                        row.sha256,
                        "ok" if row.vector is not None else "failed",
                        row.error,
                        None if row.vector is None else np.asarray(row.vector, dtype=np.float32).tobytes(),
                        now,
                        row.signature if row.vector is not None else None,
                        row.inode,
                    ),
                )
            self._bump_version()

    def delete_paths(self, paths: Iterable[bytes]) -> int:
        paths = list(paths)
        if not paths:
            return 0
        with self.transaction():
            for chunk in range(0, len(paths), 500):
                part = paths[chunk : chunk + 500]
                self.db.execute(f"DELETE FROM files WHERE path IN ({','.join('?' * len(part))})", part)
            self._bump_version()
        return len(paths)

    def _bump_version(self) -> None:
        """Inside a write transaction: record that the vectors changed (see `IndexMeta.published_is_current`)."""
        self.db.execute(
            "INSERT INTO meta VALUES ('catalog_version', '1') "
            "ON CONFLICT(key) DO UPDATE SET value=CAST(value AS INTEGER) + 1"
        )

    def ok_files(self) -> list[tuple[int, str, int, int, str | None]]:
        """(id, path, size, mtime_ns, sha256) of every embedded photo, by id."""
        rows = self.db.execute(
            "SELECT id, path, size, mtime_ns, sha256 FROM files WHERE status='ok' AND embedding IS NOT NULL ORDER BY id"
        )
        return [(key, decode_path(path), size, mtime, sha) for key, path, size, mtime, sha in rows]

    def count(self, status: str = "ok") -> int:
        return self.db.execute("SELECT count(*) FROM files WHERE status=?", (status,)).fetchone()[0]

    def ok_ids(self) -> set[int]:
        """Every usearch key: embedded photos and the frames of videos."""
        keys = {row[0] for row in self.db.execute("SELECT id FROM files WHERE status='ok' AND embedding IS NOT NULL")}
        if self._has_videos():
            keys.update(row[0] for row in self.db.execute("SELECT ? + id FROM frames", (FRAME_KEYS,)))
        return keys

    def vectors(self, ids: Iterable[int] | None = None, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(keys, float32 vectors) in chunks, for every key (photos, then frames) or only `ids`."""
        photos = "SELECT id, embedding FROM files WHERE status='ok' AND embedding IS NOT NULL"
        frames = "SELECT ? + id, embedding FROM frames WHERE 1"
        if ids is None:
            queries: list[tuple[str, tuple[int, ...]]] = [(f"{photos} ORDER BY id", ())]
            if self._has_videos():
                queries.append((f"{frames} ORDER BY id", (FRAME_KEYS,)))
            for sql, parameters in queries:
                cursor = self.db.execute(sql, parameters)
                while rows := cursor.fetchmany(chunk):
                    yield self._stack(rows)
            return
        wanted = sorted(int(i) for i in ids)
        photo_ids = [i for i in wanted if not is_frame_key(i)]
        frame_ids = [i - FRAME_KEYS for i in wanted if is_frame_key(i)] if self._has_videos() else []
        parts: list[tuple[str, list[int], tuple[int, ...]]] = [(photos, photo_ids, ())]
        parts.append((frames, frame_ids, (FRAME_KEYS,)))
        for sql, part_ids, parameters in parts:
            for start in range(0, len(part_ids), 500):
                part = part_ids[start : start + 500]
                rows = self.db.execute(
                    f"{sql} AND id IN ({','.join('?' * len(part))})",
                    (*parameters, *part),
                ).fetchall()
                if rows:
                    yield self._stack(rows)

    @staticmethod
    def _stack(rows) -> tuple[np.ndarray, np.ndarray]:
        keys = np.array([r[0] for r in rows], dtype=np.uint64)
        vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        return keys, vectors

    def latest(self, limit: int) -> list[tuple[int, str]]:
        """(key, path) of the photos and videos added last, newest first (by row id: no scan of the table); a
        video's key is its first frame's."""
        if not self._has_videos():
            rows = self.db.execute("SELECT id, path FROM files WHERE status='ok' ORDER BY id DESC LIMIT ?", (limit,))
            return [(row[0], decode_path(row[1])) for row in rows]
        rows = self.db.execute(
            "SELECT CASE WHEN kind='video' THEN (SELECT ? + min(frames.id) FROM frames WHERE file_id=files.id) "
            "ELSE id END, path FROM files WHERE status='ok' ORDER BY id DESC LIMIT ?",
            (FRAME_KEYS, limit),
        )
        return [(row[0], decode_path(row[1])) for row in rows if row[0] is not None]

    def served_file(self, key: int) -> FileState | None:
        """The row of a photo or video that was indexed successfully, under its key or one of its frames' keys (a
        failed or unknown key: None): what may be served."""
        file_id = self._file_ids([int(key)]).get(int(key))
        if file_id is None:
            return None
        row = self.db.execute(
            f"SELECT id, path, size, mtime_ns, status, sha256, NULL, {self._inode} FROM files "
            "WHERE id=? AND status='ok'",
            (file_id,),
        ).fetchone()
        return None if row is None else FileState(*row)

    def paths_for(self, ids: Iterable[int]) -> dict[int, str]:
        """key -> the path of its photo, or of the video a frame's key belongs to."""
        file_of = self._file_ids([int(i) for i in ids])
        if not file_of:
            return {}
        wanted = sorted(set(file_of.values()))
        found: dict[int, str] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            rows = self.db.execute(f"SELECT id, path FROM files WHERE id IN ({','.join('?' * len(part))})", part)
            found.update((row[0], decode_path(row[1])) for row in rows)
        return {key: found[file_id] for key, file_id in file_of.items() if file_id in found}

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def duplicate_paths(self) -> int:
        return self.db.execute("SELECT count(*) - count(DISTINCT path) FROM files").fetchone()[0]


def recorded_meta(index_dir: Path) -> IndexMeta:
    """What the catalog in `index_dir` records, read without a lock; an empty IndexMeta where nothing is recorded
    yet (no index, or a first run killed while it was creating the catalog). Imports no usearch: cheap enough
    for the CLI's cold start."""
    if not Catalog.path_in(index_dir).exists():
        return IndexMeta()
    try:
        with Catalog.open(index_dir, create=False) as catalog:
            return catalog.index_meta()
    except IndexMissing:
        return IndexMeta()


def holds_contents(index_dir: Path, shas: list[str]) -> bool:
    """Whether the catalog in `index_dir` holds an embedded file of every one of these content hashes, read
    without a lock and without usearch (the CLI's cold start asks, to skip warming a model it will not need)."""
    if not shas or not Catalog.path_in(index_dir).exists():
        return False
    try:
        with Catalog.open(index_dir, create=False) as catalog:
            return all(catalog.embedding_of_content(sha) is not None for sha in shas)
    except EdgeSearchError:
        return False
