"""The edge between a Typer app and the shell, shared by `edge-search` and `export-model`.

Usage errors become one line and exit 2; the package's own errors become their message and the exit
code from the caller's table; nothing the user can cause ends in a traceback. Library code never
prints or exits: only this module and the command modules do.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping

import typer
from rich.console import Console
from rich.text import Text

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)  # messages hold paths and [extras]

# Control and bidirectional-formatting characters, shown as ⟨U+001B⟩ and never obeyed (as the page shows them): a
# file name cannot retitle the terminal (OSC), colour or erase what follows (CSI), overwrite its line (CR) or
# reverse its own text (U+202E).
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")


def visible(text: str, keep: str = "") -> str:
    """`text` with every control or bidi-formatting character (but those in `keep`) written as ⟨U+XXXX⟩."""
    return _INVISIBLE.sub(lambda m: m[0] if m[0] in keep else f"⟨U+{ord(m[0]):04X}⟩", text)


def say(label: str, style: str, message: str) -> None:
    """`label` in colour on a terminal, then `message` as given (no markup is parsed in it; control characters,
    which may come with a file name, made visible)."""
    err.print(Text.assemble((label, style), " ", visible(message, keep="\n")))


def _is_click_error(exc: BaseException) -> bool:
    """Click's exceptions (vendored inside typer >= 0.29, the real `click` before): duck-typed on purpose."""
    return hasattr(exc, "exit_code") and hasattr(exc, "format_message") and not isinstance(exc, typer.Exit)


def _usage_line(prog: str, exc: BaseException) -> str:
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else prog
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]  # click, duck-typed
    # click names its range types ("'abc' is not a valid int range"); a person expects the plain words
    message = message.replace(" valid int range.", " valid integer.").replace(" valid float range.", " valid number.")
    return f"{command}: {message} (see `{command} --help`)"


def exit_code_for(exc: BaseException, table: Mapping[type, int]) -> int:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return EXIT_INTERNAL


def run(
    app: typer.Typer,
    *,
    prog: str,
    table: Mapping[type, int],
    base_error: type[Exception],
    brief: Callable[[], str] | None,
    interrupted: str,
    fast_exit: bool = False,
) -> None:
    """Run `app` and turn whatever it ends with into an exit status."""
    args = sys.argv[1:]
    completing = f"_{prog.replace('-', '_').upper()}_COMPLETE" in os.environ  # the shell asks for completions
    if not args and brief is not None and not completing:  # nothing on the command line: a usage error
        err.print(brief())
        sys.exit(EXIT_USAGE)
    try:
        code = app(args=args, prog_name=prog, standalone_mode=False)
        code = code if isinstance(code, int) else EXIT_OK
    except base_error as exc:
        say(f"{prog}:", "bold red", str(exc))
        code = exit_code_for(exc, table)
    except typer.Exit as exc:
        code = exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        err.print(f"{prog}: interrupted. {interrupted}")
        code = EXIT_INTERRUPTED
    except Exception as exc:
        if not _is_click_error(exc):
            raise
        exit_code: int = getattr(exc, "exit_code")  # noqa: B009  (click's, duck-typed: see _is_click_error)
        if exit_code == 0:  # --help and friends end this way in non-standalone mode
            code = EXIT_OK
        else:
            err.print(_usage_line(prog, exc))
            code = EXIT_USAGE if exit_code == 2 else exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    if fast_exit:
        os._exit(code)  # skips ~0.2 s of onnxruntime teardown; every command closed its files before returning
    sys.exit(code)
