"""The usearch HNSW file: derived from the catalog, published atomically as `index.<gen>.usearch`.

Publishing: write a temp file, fsync, rename, fsync the directory; only then does the caller commit
the new generation (file name + sha256) to the catalog and delete older generations. A reader opens
the generation the catalog names and checks its sha256 before usearch parses it, so a truncated,
bit-flipped or foreign file is detected instead of crashing the process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from usearch.index import Index

from edge_search.runtime.errors import IndexCorrupt, UsageError
from edge_search.runtime.files import VerifiedCache, sha256_file
from edge_search.runtime.host import default_threads

DTYPES = ("f16", "f32", "i8")
DEFAULT_DTYPE = "f16"
DEFAULT_CONNECTIVITY = 16
DEFAULT_EXPANSION_ADD = 128
DEFAULT_EXPANSION_SEARCH = 128  # recall@10 0.993 on 20k clustered 768-d vectors (0.969 at 64)
# Up to this many vectors a query scans them all: exact results in ~2 ms at 10k, ~20 ms at 100k and
# ~0.23 s at 1M (f16, 768-d, 2 AVX2 cores), about the model's own time per query at 1M. Exact, because
# HNSW's recall falls as the collection grows: 0.86 at 100k with the default breadth, 0.989 with 1024,
# and only 0.90 at 1M with breadth 3238 on clustered photo-like vectors. Above it, HNSW.
EXACT_SEARCH_MAX = 1_000_000
BREADTH_ANCHOR = 100_000  # HNSW breadth 1024 here (recall@10 0.989 measured), growing with sqrt(count) beyond
_GEN_FILE = re.compile(r"^index\.(\d+)\.usearch$")


@dataclass(frozen=True)
class IndexSettings:
    dim: int
    dtype: str = DEFAULT_DTYPE
    connectivity: int = DEFAULT_CONNECTIVITY
    expansion_add: int = DEFAULT_EXPANSION_ADD
    expansion_search: int = DEFAULT_EXPANSION_SEARCH

    def new_index(self) -> Index:
        return usearch_index()(
            ndim=self.dim,
            metric="cos",
            dtype=self.dtype,
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self.expansion_search,
        )


def usearch_index() -> type[Index]:
    """usearch's Index class, imported on first use: reading a catalog's meta (the CLI's cold start, `info`)
    needs none of it."""
    with contextlib.suppress(ImportError):  # a bare install has none: the model side says which extra it needs
        import onnxruntime  # noqa: F401  (must load before usearch: the reverse order segfaults, usearch 2.26 + onnxruntime 1.31)
    from usearch.index import Index

    return Index


def __getattr__(name: str) -> type[Index]:
    """`vector_index.Index`, the usearch class, without importing usearch with this module."""
    if name == "Index":
        return usearch_index()
    raise AttributeError(name)


@dataclass(frozen=True)
class IndexOptions:
    """What a caller asks to change in the usearch settings (None: keep what the index has, or the default);
    applied to a new index or by rebuilding an existing one from the catalog."""

    dtype: str | None = None
    connectivity: int | None = None
    expansion_add: int | None = None
    expansion_search: int | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}.")

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def applied_to(self, base: IndexSettings) -> IndexSettings:
        return replace(
            base, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        )


def file_name(generation: int) -> str:
    return f"index.{generation}.usearch"


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


SAMPLE_EDGE = 1 << 20  # bytes read at each end of the file by `fingerprint`
SAMPLE_BLOCKS, SAMPLE_BLOCK = 64, 4096  # and this many blocks spread in between


def fingerprint(path: Path) -> str:
    """A cheap digest of a file: its size, first and last MiB and 64 blocks spread in between (~2.3 MiB
    read whatever the size). Checked on every open, where a full sha256 of a 1.5 GB index would take
    seconds: catches truncation, a foreign file, a damaged header or tail; the full hash is checked
    once per file state and by `edge-search verify`."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest.update(str(size).encode())
        offsets = [0, max(0, size - SAMPLE_EDGE)] if size > 2 * SAMPLE_EDGE else [0]
        lengths = [SAMPLE_EDGE, SAMPLE_EDGE] if size > 2 * SAMPLE_EDGE else [size]
        if size > 2 * SAMPLE_EDGE:
            step = (size - 2 * SAMPLE_EDGE) // (SAMPLE_BLOCKS + 1)
            offsets += [SAMPLE_EDGE + step * (i + 1) for i in range(SAMPLE_BLOCKS)]
            lengths += [SAMPLE_BLOCK] * SAMPLE_BLOCKS
        for offset, length in zip(offsets, lengths):
            handle.seek(offset)
            digest.update(handle.read(length))
    return digest.hexdigest()


def _verified_cache():

    return VerifiedCache(name="verified-indexes.json")


def write_atomically(index: Index, directory: Path, generation: int) -> tuple[str, str]:
    """Save `index` as generation `generation`; returns (file name, sha256). The old file stays.

    The new file's state is remembered as verified, so readers on this machine need not hash it."""
    name = file_name(generation)
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    try:
        try:
            index.save(str(tmp))
        except RuntimeError as exc:  # usearch reports a failed write (disk full, file too large) this way
            raise OSError(errno.EIO, f"usearch could not write {tmp.name}: {exc}") from exc
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, directory / name)
        fsync_dir(directory)
        final = directory / name
        _verified_cache().remember(final, final.stat(), f"{digest}:{fingerprint(final)}")
        return name, digest
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_verified(path: Path, sha256: str, *, view: bool, full_hash: bool = False) -> Index:
    """Open a published index file after checking it is what was published; IndexCorrupt if not.

    The full sha256 is computed once per file state (size, mtime, ctime, inode; remembered in the user
    cache, and by the writer that made the file) or always with `full_hash`; every open also compares
    the cheap `fingerprint` sample with the one seen at verification, so a file damaged in place is
    caught even where its state looks the same.
    """
    cache = _verified_cache()
    try:
        stat = path.stat()
        seen = f"{sha256}:{fingerprint(path)}"  # what a verified file in this state looks like
        if full_hash or not cache.known_good(path, stat, seen):
            if sha256_file(path) != sha256:
                raise IndexCorrupt(
                    f"The index file {path.name} does not match the hash recorded when it was published."
                )
            cache.remember(path, stat, seen)
    except FileNotFoundError:
        raise IndexCorrupt(f"The index file {path.name} is missing.") from None
    except OSError as exc:
        raise IndexCorrupt(f"The index file {path.name} cannot be read ({exc.strerror}).") from None
    try:
        index = usearch_index().restore(str(path), view=view)
    except Exception as exc:  # usearch raises RuntimeError / ValueError for bad headers
        raise IndexCorrupt(f"usearch cannot read {path.name}: {exc}") from None
    if index is None:
        raise IndexCorrupt(f"usearch cannot read {path.name}.")
    return index


def sync_with(index: Index, want: set[int], vectors_for) -> Index:
    """Make `index` hold exactly the keys in `want`: remove the extra, add the missing (from `vectors_for`)."""
    # np.asarray reads every key in one call; iterating `index.keys` costs O(n) per key (80 s at 100k)
    have = set(np.asarray(index.keys, dtype=np.uint64).tolist()) if len(index) else set()
    extra = have - want
    if extra:
        index.remove(np.fromiter(extra, dtype=np.uint64, count=len(extra)))
    missing = want - have
    threads = default_threads()
    for keys, vectors in vectors_for(missing):
        index.add(keys, vectors, threads=threads)
    return index


def expansion_for(count: int, configured: int) -> int:
    """HNSW's search breadth for a collection of `count` (queries use it above the exact-scan size;
    `dupes` above its own): recall@10 falls as the graph grows at a fixed breadth (0.86 at 100k with 128),
    so it grows with sqrt(count): 1024 at 100k (0.989 measured), ~3200 at 1M (0.90), capped at 4096."""
    if count <= BREADTH_ANCHOR:
        return configured
    return max(configured, min(4096, int(1024 * (count / BREADTH_ANCHOR) ** 0.5)))


def search(index: Index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, cosine similarities), best first; exact scan for small collections."""
    count = len(index)
    if count == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32)
    wanted = expansion_for(count, index.expansion_search)
    if wanted != index.expansion_search:
        index.expansion_search = wanted  # type: ignore[misc]  # settable; usearch types it read-only
    matches = index.search(
        query.astype(np.float32), min(k, count), exact=count <= EXACT_SEARCH_MAX, threads=default_threads()
    )
    return np.asarray(matches.keys, dtype=np.uint64), (1.0 - np.asarray(matches.distances, dtype=np.float32))


def search_many(
    index: Index, queries: np.ndarray, k: int, exact_max: int = EXACT_SEARCH_MAX
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per query: (keys, cosine similarities), best first, from one batched search on every core
    (exact scan up to `exact_max` vectors, HNSW above)."""
    count = len(index)
    if count == 0 or not len(queries):
        return [np.empty(0, dtype=np.uint64)] * len(queries), [np.empty(0, dtype=np.float32)] * len(queries)
    matches = index.search(
        queries.astype(np.float32), min(k, count), exact=count <= exact_max, threads=default_threads()
    )
    keys = np.asarray(matches.keys, dtype=np.uint64).reshape(len(queries), -1)
    scores = 1.0 - np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)
    # usearch answers one query with `Matches` (no counts), several with `BatchMatches`
    counts = np.asarray(getattr(matches, "counts", [keys.shape[1]])).reshape(-1)
    return [keys[i, : counts[i]] for i in range(len(queries))], [scores[i, : counts[i]] for i in range(len(queries))]


def stale_files(directory: Path, keep: str | None) -> list[Path]:
    """Index generations other than `keep`, and temp files left by a killed writer."""
    found = []
    for entry in directory.iterdir():
        if entry.name == keep:
            continue
        if _GEN_FILE.match(entry.name) or (entry.name.startswith(".index.") and entry.name.endswith(".tmp")):
            found.append(entry)
    return found
