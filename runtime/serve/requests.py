"""The API's requests, parsed and checked once: a bad parameter is a JSON 400 naming it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.requests import Request

from edge_search.runtime.jobs.combined_query import Term, terms_from
from edge_search.runtime.jobs.dates import DateRange
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
        found = float(value)
    except ValueError:
        raise HttpError(400, f"{name} must be a number, not {value!r}.") from None
    if not math.isfinite(found):
        raise HttpError(400, f"{name} must be a finite number, not {value!r}.")
    return found


async def _drain(request: Request, cap: int) -> None:
    """Read and drop a refused body (up to `cap` bytes: beyond that the connection is simply closed)."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > cap:
            break


def result_kind(value: str | None) -> str | None:
    """`type`: photo or video (absent: both)."""
    if value in (None, ""):
        return None
    if value not in ("photo", "video"):
        raise HttpError(400, f"type is `photo` or `video`, not {value!r}.")
    return value


MAX_PHOTOS = 8  # photos in one query, liked and unliked together
API_DATES = ("after", "before")  # the date range's parameters, as errors name them


@dataclass(frozen=True)
class QueryRequest:
    """POST /api/query, multipart/form-data: photos (`image`, repeatable, each weighted by the `image_weight` at the
    same position, default 1; `unlike_image` to be unlike) and/or words (`text`, `unlike_text`, repeatable, each may
    start with `WEIGHT:`), combined by `combined_query`'s rule; `after` / `before` a date range."""

    terms: list[Term]
    texts: list[str]
    k: int
    min_score: float | None
    under: str | None
    scope: str  # "box" (this index) or "fleet" (every box synced to Milvus)
    box: str | None
    dates: DateRange
    kind: str | None = None  # "photo" or "video": only those

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
        async with request.form(max_files=MAX_PHOTOS, max_fields=40, max_part_size=limit) as form:
            received = 0
            photos: dict[str, list[bytes]] = {"image": [], "unlike_image": []}
            for field, uploads in photos.items():
                for upload in form.getlist(field):
                    if isinstance(upload, str):
                        continue
                    data = await upload.read(limit + 1 - received)
                    received += len(data)
                    if received > limit:  # all photos together, whatever the headers said
                        raise too_large
                    if not data:
                        raise HttpError(400, f"An uploaded file in `{field}` is empty.")
                    uploads.append(data)
            given = [number(text_field(w), "image_weight") for w in form.getlist("image_weight")]
            weights = [1.0 if w is None else w for w in given]
            texts = [t.strip() for t in (text_field(v) for v in form.getlist("text")) if t and t.strip()]
            unlike_texts = [t.strip() for t in (text_field(v) for v in form.getlist("unlike_text")) if t and t.strip()]
            terms = [
                Term(image=data, weight=weights[i] if i < len(weights) else 1.0)
                for i, data in enumerate(photos["image"])
            ]
            terms += [Term(image=data, weight=-1.0) for data in photos["unlike_image"]]
            terms += terms_from(texts=texts, unlike_texts=unlike_texts)
            query = cls(
                terms=terms,
                texts=texts,
                k=whole_number(text_field(form.get("k")), "k", config.default_k, 1, config.max_k),
                min_score=number(text_field(form.get("min_score")), "min_score"),
                under=text_field(form.get("under")) or None,
                scope=str(form.get("scope") or "box"),
                box=str(form.get("box") or "").strip() or None,
                dates=DateRange.asked(
                    text_field(form.get("after")) or None, text_field(form.get("before")) or None, API_DATES
                ),
                kind=result_kind(text_field(form.get("type"))),
            )
        if not any(term.weight > 0 for term in query.terms):
            raise HttpError(400, "No file in the form field `image` (and no `text`).")
        if query.scope not in ("box", "fleet"):
            raise HttpError(
                400, f"scope is `box` (this index) or `fleet` (every box synced to Milvus), not {query.scope!r}."
            )
        if query.scope == "fleet" and (query.under or not query.dates.empty or query.kind):
            raise HttpError(
                400, "`under`, `after`, `before` and `type` work on this box's index, not with scope=fleet."
            )
        return query

    @property
    def photos(self) -> list[bytes]:
        """The uploaded photos, in the order of their terms."""
        return [term.image for term in self.terms if isinstance(term.image, bytes)]
