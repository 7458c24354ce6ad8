"""File helpers every layer shares: content hashes, a small atomic write, and the verified-file cache."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import platformdirs


def sha256_file(path: str | os.PathLike[str] | int) -> str:
    """The hex sha256 of a file's content, read in blocks (constant memory; hashlib releases the GIL on blocks
    this large, as `hashlib.file_digest` does, which Python 3.10 lacks). `path` may be an open descriptor (read
    from where it stands, then closed): what `open_regular` checked is what is hashed."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


_INT64 = (-(1 << 63), (1 << 63) - 1)  # SQLite's INTEGER


@dataclass(frozen=True)
class FileStamp:
    """What says a file is still the one that was indexed: its size, its modification time as the catalog can store
    it, and which file it is (device and inode): a file replaced by a hard link to another with the same size and
    time, or reached through a swapped folder, is another inode. A time beyond what 64 bits of nanoseconds hold
    (after 2262, before 1677: a camera with a wrong clock, a restored archive) is clamped to the nearest one the
    catalog stores, the same way at every run, so the file is neither refused nor embedded again each time."""

    size: int
    mtime_ns: int
    inode: str  # "device:inode"

    @classmethod
    def of(cls, info: os.stat_result) -> FileStamp:
        return cls(info.st_size, storable_ns(info.st_mtime_ns), f"{info.st_dev}:{info.st_ino}")

    def matches(self, size: int, mtime_ns: int, inode: str | None) -> bool:
        """Whether a recorded (size, mtime_ns, inode) is this file; an inode not yet recorded (an index from before
        identities, until its next run) is not compared."""
        return (self.size, self.mtime_ns) == (size, mtime_ns) and inode in (None, self.inode)


def storable_ns(nanoseconds: int) -> int:
    """A time in nanoseconds, clamped to what a signed 64-bit integer (SQLite's INTEGER) holds."""
    return min(max(nanoseconds, _INT64[0]), _INT64[1])


# What a path that is not a regular file turns out to be, in the words a person reads in a report.
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
# Opened without blocking (a FIFO with no writer would otherwise hang open() for ever), without becoming the
# controlling terminal of a tty, and closed on exec.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


def not_regular(mode: int) -> str | None:
    """Why a file of this `st_mode` is not read as a photo (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    kind = next((words for test, words in _KINDS if test(mode)), "not a regular file")
    return f"not a regular file: {kind}"


def open_regular(path: str | os.PathLike[str], *, no_follow: bool = False) -> tuple[int, os.stat_result]:
    """An open descriptor of a regular file and its stat, taken from the descriptor itself (so what is checked is
    what is read). Raises OSError; a FIFO, device or socket raises `NotRegularFile` without a single byte read.
    `no_follow`: refuse a symlink as the last component (for a path already resolved)."""
    fd = os.open(path, _OPEN_FLAGS | (os.O_NOFOLLOW if no_follow else 0))
    try:
        info = os.fstat(fd)
        reason = not_regular(info.st_mode)
        if reason is not None:
            raise NotRegularFile(reason)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


class NotRegularFile(OSError):
    """A path that leads to something other than a regular file (its words say what)."""


def read_bounded(fd: int, limit: int) -> bytes | None:
    """At most `limit` bytes from `fd`, or None when there are more: a file that grows, or one whose size `stat`
    does not tell, can never make a read unbounded."""
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, 4 * 2**20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    return None if len(data) > limit else data


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file and a rename: a reader sees the old file or the new one,
    never half of one. Raises OSError; callers that can live without the file catch it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def cache_dir() -> Path:
    """edge-search's per-user cache: verified-file states and notes already shown (XDG_CACHE_HOME moves it)."""
    return Path(platformdirs.user_cache_dir("edge-search"))


class VerifiedCache:
    """Remembers which file states (path, size, times, inode) were hashed in full and found good, so a large
    model or index file is hashed once per state rather than on every process start."""

    def __init__(self, path: Path | None = None, name: str = "verified-models.json"):
        self.path = path or cache_dir() / name

    def _read(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _key(file: Path, stat: os.stat_result) -> str:
        """The file's state: rewritten in place, replaced or truncated, one of these changes."""
        return f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"

    def known_good(self, file: Path, stat: os.stat_result, sha: str) -> bool:
        return self._read().get(self._key(file, stat)) == sha

    def remember(self, file: Path, stat: os.stat_result, sha: str) -> None:
        entries = {key: value for key, value in self._read().items() if os.path.exists(key.split("|", 1)[0])}
        entries[self._key(file, stat)] = sha
        try:
            write_atomically(self.path, json.dumps(entries).encode())
        except OSError:
            pass  # a cache that cannot be written only costs a re-hash next time


def under(path: bytes, prefixes: list[bytes]) -> bool:
    """Whether `path` is one of `prefixes` or inside one of them (byte paths, as the catalog stores them)."""
    return any(path == p or path.startswith(p.rstrip(b"/") + b"/") for p in prefixes)
