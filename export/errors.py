"""The export package's one exception; its CLI turns it into a message and `exit_code`."""

from __future__ import annotations

# Exit codes of `export-model`, documented in README.md.
EXIT_USAGE = 2  # bad option, existing output without --force, bad local path
EXIT_SOURCE = 3  # model cannot be fetched or is not a supported architecture
EXIT_PARITY = 4  # the exported graph drifts from PyTorch beyond the threshold
EXIT_STORAGE = 5  # disk full / cannot write the bundle


class ExportError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_SOURCE):
        super().__init__(message)
        self.exit_code = exit_code
