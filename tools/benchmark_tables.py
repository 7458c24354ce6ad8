"""The tables of docs/*.md, rendered from the results they report, so that none is copied by hand.

    python tools/benchmark_tables.py            rewrite every generated table in docs/*.md
    python tools/benchmark_tables.py --check    exit 1 if one differs from its results (tests/cli/test_cli_docs.py)

A generated table sits between two markers that name its results file and the benchmark section that renders it
(its `markdown` function, or the one named after it):

    <!-- generated from benchmarks/results/FILE.json by benchmarks.SECTION[.FUNCTION] -->
    ...
    <!-- end of generated table -->
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(
    r"(<!-- generated from (?P<source>\S+) by (?P<section>benchmarks\.\w+)(?:\.(?P<function>\w+))? -->\n)(?P<body>.*?)"
    r"(<!-- end of generated table -->)",
    re.S,
)


def render(text: str) -> str:
    """`text` with every generated block rendered anew from its results file."""

    def block(match: re.Match) -> str:
        report = json.loads((ROOT / match["source"]).read_text())
        renderer = getattr(importlib.import_module(match["section"]), match["function"] or "markdown")
        return f"{match[1]}\n{renderer(report).strip()}\n\n{match[6]}"

    return BLOCK.sub(block, text)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    stale = []
    for doc in DOCS:
        current = doc.read_text(encoding="utf-8")
        fresh = render(current)
        if fresh != current:
            stale.append(doc)
            if "--check" not in sys.argv[1:]:
                doc.write_text(fresh, encoding="utf-8")
    if "--check" in sys.argv[1:]:
        sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
