"""The Typer app itself: the exit-code table, --version, shell completion. Commands register on it from
`commands` and `serve`; `program` puts them together and runs them."""

from __future__ import annotations

from typing import Annotated

import typer

from edge_search.runtime.errors import (
    AddressUnavailable,
    BundleError,
    ClusterError,
    ImageDecodeError,
    ImagesFailed,
    IndexBusy,
    IndexCorrupt,
    IndexMismatch,
    IndexMissing,
    Interrupted,
    ProviderError,
    StorageError,
    UsageError,
)

# Exit codes of `edge-search`, documented in README.md: the only place they are numbered.
EXIT_CODES: dict[type, int] = {
    UsageError: 2,
    BundleError: 3,
    ImageDecodeError: 4,
    ImagesFailed: 4,
    ProviderError: 5,
    IndexMissing: 6,
    IndexMismatch: 7,
    IndexCorrupt: 8,
    IndexBusy: 9,
    StorageError: 10,
    ClusterError: 11,
    AddressUnavailable: 12,
    Interrupted: 130,
}
EXIT_VERIFY_FAILED = EXIT_CODES[IndexCorrupt]

app = typer.Typer(
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Offline search-by-image: index a folder of photos, then find the ones that look like a given image.",
)


def _version(value: bool) -> None:
    if value:
        from edge_search.runtime import __version__

        typer.echo(f"edge-search {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Offline search-by-image: index a folder of photos, then find the ones that look like a given image."""


BRIEF = (
    "usage: edge-search COMMAND [OPTIONS] [ARGS]...\n"
    "commands: index, query, dupes, sync, info, remove, embed, verify, serve  ·  edge-search --help for more, "
    "edge-search COMMAND --help for one command"
)
