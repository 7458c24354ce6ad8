"""`edge-search`, the command line: parse options -> call the library -> render. Nothing else.

`main` imports nothing heavy itself: a cold query first starts opening its model session
(`prewarm`), then loads the CLI (`program`) while the session is being built.
"""

from __future__ import annotations


def main() -> None:
    import sys

    from edge_search.runtime import prewarm
    from edge_search.runtime.model import tuning

    tuning.ANNOUNCERS.append(lambda text: print(f"note: {text}", file=sys.stderr, flush=True))
    prewarm.start(sys.argv[1:])
    from edge_search.runtime.cli.program import run

    run()


__all__ = ["main"]
