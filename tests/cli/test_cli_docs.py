"""What the docs generate cannot drift: docs/cli.md is every command's `--help` (regenerate it with
`python tools/cli_docs.py > docs/cli.md`)."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_reference_is_what_the_commands_print():
    render = runpy.run_path(str(ROOT / "tools" / "cli_docs.py"))["render"]
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), (
        "docs/cli.md is stale: run `python tools/cli_docs.py > docs/cli.md`"
    )


def test_every_command_is_in_the_reference():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in ("index", "query", "embed", "dupes", "info", "remove", "verify", "serve", "sync"):
        assert f"### `edge-search {command}`" in text
    assert "## `export-model`" in text


def test_the_benchmark_tables_are_rendered_from_their_results():
    """The docs' generated tables are what their results files say (`python tools/benchmark_tables.py`)."""
    render = runpy.run_path(str(ROOT / "tools" / "benchmark_tables.py"))["render"]
    assert (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8").count("<!-- generated from ") >= 2
    for doc in sorted((ROOT / "docs").glob("*.md")):
        text = doc.read_text(encoding="utf-8")
        assert render(text) == text, f"a table of {doc.name} differs from its results: run tools/benchmark_tables.py"
