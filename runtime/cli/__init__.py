"""`edge-search`, the command line: parse options -> call the library -> render. Nothing else."""

from .app import EXIT_CODES, app, main

__all__ = ["EXIT_CODES", "app", "main"]
