"""Every JSON answer of the API, encodable whatever the library's file names are.

Paths are stored as the file system's bytes; a name that is not UTF-8 (`copy\\xe9.jpg` from an old camera or a
Windows share) reaches Python as a str with surrogate escapes, which no JSON encoder can write as UTF-8. Such a
name is sent for display with U+FFFD where its undecodable bytes were; the `id` beside it fetches the file.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


def displayable(text: str) -> str:
    """`text` itself when it is valid Unicode, else the bytes it stands for decoded with replacement characters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _displayable_tree(value: Any) -> Any:
    if isinstance(value, str):
        return displayable(value)
    if isinstance(value, dict):
        return {displayable(k) if isinstance(k, str) else k: _displayable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_displayable_tree(v) for v in value]
    return value


class JsonAnswer(JSONResponse):
    """A JSONResponse that never fails to encode (see the module's docstring)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            _displayable_tree(content), ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JsonAnswer:
    return JsonAnswer({"error": message}, status_code=status, headers=headers)
