"""The whole `edge-search` program: the Typer app with every command registered, run at the shell's edge."""

from __future__ import annotations

import warnings

from edge_search.runtime.cli import commands, serve  # noqa: F401  (registers the commands on `app`)
from edge_search.runtime.cli.app import BRIEF, EXIT_CODES, app
from edge_search.runtime.errors import EdgeSearchError
from edge_search.runtime.shell import run as run_at_edge


def run() -> None:
    warnings.filterwarnings("ignore", module="PIL")
    run_at_edge(
        app,
        prog="edge-search",
        table=EXIT_CODES,
        base_error=EdgeSearchError,
        brief=lambda: BRIEF,
        interrupted="Everything committed so far is kept; run the same command to resume.",
        fast_exit=True,
    )
