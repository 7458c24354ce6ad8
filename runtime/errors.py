"""The one exception family of the runtime; the CLI turns each into a message and an exit code."""

from __future__ import annotations

from pathlib import Path


class EdgeSearchError(Exception):
    """Base of every expected failure. `exit_code` is what the CLI exits with."""

    exit_code = 1


class BundleError(EdgeSearchError):
    """The model bundle is missing, incomplete, tampered with or of an unknown schema."""

    exit_code = 3


class ImageDecodeError(EdgeSearchError):
    """One image could not be turned into pixels; the caller skips it and goes on."""

    exit_code = 4

    def __init__(self, path: Path | str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ProviderError(EdgeSearchError):
    """The requested execution provider or precision cannot run here."""

    exit_code = 5


class IndexMissing(EdgeSearchError):
    """There is no index where one was expected."""

    exit_code = 6


class IndexMismatch(EdgeSearchError):
    """The index was built with a different bundle than the one in use."""

    exit_code = 7

    def __init__(self, message: str, *, expected: str, got: str):
        self.expected = expected
        self.got = got
        super().__init__(message)


class IndexCorrupt(EdgeSearchError):
    """The catalog cannot be read, or the index file cannot be rebuilt."""

    exit_code = 8


class IndexBusy(EdgeSearchError):
    """Another indexer holds the writer lock."""

    exit_code = 9


class StorageError(EdgeSearchError):
    """Writing failed: disk full, read-only directory, permissions."""

    exit_code = 10
