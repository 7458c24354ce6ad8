"""File helpers every layer shares: content hashes, a small atomic write, and the verified-file cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import platformdirs


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's content, read in blocks (constant memory)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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
