"""The export package's exception family: each class says what went wrong, not how to exit.

`export/cli.py` maps them to exit codes (its `EXIT_CODES` table is the only place numbers live).
"""

from __future__ import annotations


class ExportError(Exception):
    """Base of every expected export failure."""


class ExportUsageError(ExportError):
    """A bad option or path: an existing --out without --force, a missing checkpoint directory."""


class SourceError(ExportError):
    """The model cannot be fetched, or is not a supported architecture."""


class ParityError(ExportError):
    """An exported graph drifts from PyTorch beyond its threshold."""


class ExportStorageError(ExportError):
    """The bundle cannot be written (disk full, permissions)."""
