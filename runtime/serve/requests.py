"""The API's requests, parsed and checked once: a bad parameter is a JSON 400 naming it."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from edge_search.runtime.serve.config import HttpError, ServiceConfig


def text_field(value: object) -> str | None:
    """A form field sent as text (a file sent where a number belongs counts as absent)."""
    return value if isinstance(value, str) else None


def whole_number(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise HttpError(400, f"{name} must be a whole number, not {value!r}.") from None
    if not low <= number <= high:
        raise HttpError(400, f"{name} must be between {low} and {high}.")
    return number


def number(value: str | None, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise HttpError(400, f"{name} must be a number, not {value!r}.") from None


async def _drain(request: Request, cap: int) -> None:
    """Read and drop a refused body (up to `cap` bytes: beyond that the connection is simply closed)."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > cap:
            break


@dataclass(frozen=True)
class QueryRequest:
    """POST /api/query: an uploaded image and/or words, multipart/form-data."""

    image: bytes | None
    text: str | None
    k: int
    min_score: float | None
    under: str | None
    scope: str  # "box" (this index) or "fleet" (every box synced to Milvus)
    box: str | None

    @classmethod
    async def read(cls, request: Request, config: ServiceConfig) -> QueryRequest:
        """The request, size-limited before its body is read (a 413 the client can read, not a reset)."""
        limit = config.max_upload_bytes
        too_large = HttpError(413, f"The upload is larger than {limit // 2**20} MiB.")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            await _drain(request, cap=8 * limit)
            raise too_large
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HttpError(400, "Send the image as multipart/form-data in a field named `image`.")
        async with request.form(max_files=1, max_fields=10, max_part_size=limit) as form:
            upload = form.get("image")
            data = None
            if upload is not None and not isinstance(upload, str):
                data = await upload.read(limit + 1)
                if len(data) > limit:
                    raise too_large
                if not data:
                    raise HttpError(400, "The uploaded file is empty.")
            query = cls(
                image=data,
                text=str(form.get("text") or "").strip() or None,
                k=whole_number(text_field(form.get("k")), "k", config.default_k, 1, config.max_k),
                min_score=number(text_field(form.get("min_score")), "min_score"),
                under=text_field(form.get("under")) or None,
                scope=str(form.get("scope") or "box"),
                box=str(form.get("box") or "").strip() or None,
            )
        if query.image is None and query.text is None:
            raise HttpError(400, "No file in the form field `image` (and no `text`).")
        if query.scope not in ("box", "fleet"):
            raise HttpError(
                400, f"scope is `box` (this index) or `fleet` (every box synced to Milvus), not {query.scope!r}."
            )
        if query.scope == "fleet" and query.under:
            raise HttpError(400, "`under` works on this box's index, not with scope=fleet.")
        return query

    @property
    def images(self) -> list[bytes]:
        return [self.image] if self.image else []
