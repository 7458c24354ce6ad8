"""The usearch HNSW file: derived from the catalog, published atomically as `index.<gen>.usearch`.

Publishing: write a temp file, fsync, rename, fsync the directory; only then does the caller commit
the new generation (file name + sha256) to the catalog and delete older generations. A reader opens
the generation the catalog names and checks its sha256 before usearch parses it, so a truncated,
bit-flipped or foreign file is detected instead of crashing the process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401  (must load before usearch: the reverse order segfaults, usearch 2.26 + onnxruntime 1.31)
from usearch.index import Index

from .bundle import sha256_file
from .errors import IndexCorrupt
from .providers import default_threads

DTYPES = ("f16", "f32", "i8")
DEFAULT_DTYPE = "f16"
DEFAULT_CONNECTIVITY = 16
DEFAULT_EXPANSION_ADD = 128
DEFAULT_EXPANSION_SEARCH = 128  # recall@10 0.993 on 20k clustered 768-d vectors (0.969 at 64)
# Up to this many vectors a query scans them all: exact results in ~2 ms at 10k and ~20 ms at 100k
# (f16, 768-d, 2 cores), a tenth of the model's time per query. Above it, HNSW (at 100k with the
# defaults HNSW gives recall@10 0.86 in 2 ms; expansion 1024 gives 0.989 in 15 ms).
EXACT_SEARCH_MAX = 100_000
_GEN_FILE = re.compile(r"^index\.(\d+)\.usearch$")


@dataclass(frozen=True)
class IndexSettings:
    dim: int
    dtype: str = DEFAULT_DTYPE
    connectivity: int = DEFAULT_CONNECTIVITY
    expansion_add: int = DEFAULT_EXPANSION_ADD
    expansion_search: int = DEFAULT_EXPANSION_SEARCH

    def new_index(self) -> Index:
        return Index(
            ndim=self.dim,
            metric="cos",
            dtype=self.dtype,
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self.expansion_search,
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


def write_atomically(index: Index, directory: Path, generation: int) -> tuple[str, str]:
    """Save `index` as generation `generation`; returns (file name, sha256). The old file stays."""
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
        return name, digest
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_verified(path: Path, sha256: str, *, view: bool) -> Index:
    """Open a published index file after checking its hash; IndexCorrupt if it is not what was published."""
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise IndexCorrupt(f"The index file {path.name} is missing.") from None
    except OSError as exc:
        raise IndexCorrupt(f"The index file {path.name} cannot be read ({exc.strerror}).") from None
    if actual != sha256:
        raise IndexCorrupt(f"The index file {path.name} does not match the hash recorded when it was published.")
    try:
        index = Index.restore(str(path), view=view)
    except Exception as exc:  # usearch raises RuntimeError / ValueError for bad headers
        raise IndexCorrupt(f"usearch cannot read {path.name}: {exc}") from None
    if index is None:
        raise IndexCorrupt(f"usearch cannot read {path.name}.")
    return index


def sync_with(index: Index, want: set[int], vectors_for) -> Index:
    """Make `index` hold exactly the keys in `want`: remove the extra, add the missing (from `vectors_for`)."""
    have = set(int(k) for k in index.keys) if len(index) else set()
    extra = have - want
    if extra:
        index.remove(np.fromiter(extra, dtype=np.uint64, count=len(extra)))
    missing = want - have
    threads = default_threads()
    for keys, vectors in vectors_for(missing):
        index.add(keys, vectors, threads=threads)
    return index


def search(index: Index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, cosine similarities), best first; exact scan for small collections."""
    count = len(index)
    if count == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32)
    matches = index.search(query.astype(np.float32), min(k, count), exact=count <= EXACT_SEARCH_MAX, threads=default_threads())
    return np.asarray(matches.keys, dtype=np.uint64), (1.0 - np.asarray(matches.distances, dtype=np.float32))


def stale_files(directory: Path, keep: str | None) -> list[Path]:
    """Index generations other than `keep`, and temp files left by a killed writer."""
    found = []
    for entry in directory.iterdir():
        if entry.name == keep:
            continue
        if _GEN_FILE.match(entry.name) or (entry.name.startswith(".index.") and entry.name.endswith(".tmp")):
            found.append(entry)
    return found
