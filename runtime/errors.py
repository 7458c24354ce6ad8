"""The one exception family of the runtime. Each class says what went wrong; the CLI's `EXIT_CODES`
table (runtime/cli/app.py) is the only place that turns them into exit numbers."""

from __future__ import annotations

from pathlib import Path


class EdgeSearchError(Exception):
    """Base of every expected failure."""


class UsageError(EdgeSearchError):
    """A request that cannot mean anything: an unknown device, a folder that does not exist."""


class BundleError(EdgeSearchError):
    """The model bundle is missing, incomplete, tampered with or of an unknown schema."""


class ImageDecodeError(EdgeSearchError):
    """One image could not be turned into pixels; the caller skips it and goes on."""

    def __init__(self, path: Path | str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ImagesFailed(EdgeSearchError):
    """A run finished, but some images could not be read (their reasons are in the result)."""


class ProviderError(EdgeSearchError):
    """The requested execution provider or precision cannot run here; `reason` is why, in a few words (the
    message also says what to do)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class IndexMissing(EdgeSearchError):
    """There is no index where one was expected."""

    @classmethod
    def never_completed(cls, directory: Path | str) -> IndexMissing:
        """An index whose first run was killed before it committed anything (the next run builds it)."""
        return cls(
            f"The index at {directory} was never completed (its first run was interrupted). "
            "Run `edge-search index DIR` to build it."
        )


class IndexMismatch(EdgeSearchError):
    """The index was built with a different bundle than the one in use."""

    def __init__(self, message: str, *, expected: str, got: str):
        self.expected = expected
        self.got = got
        super().__init__(message)


class IndexCorrupt(EdgeSearchError):
    """The catalog cannot be read, or the index file cannot be rebuilt."""


class IndexBusy(EdgeSearchError):
    """Another indexer holds the writer lock."""


class StorageError(EdgeSearchError):
    """Writing failed: disk full, read-only directory, permissions."""


class Interrupted(EdgeSearchError):
    """Ctrl-C or SIGTERM: what was embedded before it has been committed."""


class ClusterError(EdgeSearchError):
    """A Ray cluster or Milvus server cannot be reached, has no room, or failed mid-run (what was
    committed before is kept)."""


class AddressUnavailable(EdgeSearchError):
    """`serve` cannot listen where it was told (the port is taken, or the address is not this machine's)."""
