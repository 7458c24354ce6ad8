"""The API's handlers: each takes the shared `Service` from the app's state, parses its request, calls the
library on the worker thread and answers JSON (errors are raised, and turned into JSON by `app`)."""

from __future__ import annotations

import asyncio
import io
import urllib.parse
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from edge_search.runtime.errors import ImageDecodeError
from edge_search.runtime.jobs.dates import DateRange
from edge_search.runtime.model.preprocess import declared_pixels
from edge_search.runtime.serve.answers import JsonAnswer, displayable
from edge_search.runtime.serve.auth import PAGE_HEADERS, STATIC, client_of, same_origin
from edge_search.runtime.serve.config import HttpError
from edge_search.runtime.serve.photos import byte_range
from edge_search.runtime.serve.requests import API_DATES, QueryRequest, number, result_kind, whole_number
from edge_search.runtime.serve.service import Service
from edge_search.runtime.serve.thumbnails import media_type
from edge_search.runtime.store.catalog import is_frame_key

MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger id cannot be indexed


def _service(request: Request) -> Service:
    return request.app.state.service


def _id(request: Request) -> int:
    """The path's image id; one out of SQLite's range cannot name an indexed image: 404 like any unknown id."""
    key = request.path_params["id"]
    if not 0 <= key <= MAX_ID:
        raise HttpError(404, f"No indexed image has id {key}.")
    return key


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def health(request: Request) -> Response:
    service = _service(request)
    model = service.model
    count, videos = await service.call(service.library_counts)
    watch = service.watcher.status.as_dict() if service.watcher else {"mode": "off"}
    return JsonAnswer(
        {
            "ok": True,
            "count": count,  # files: photos and videos
            "videos": videos,
            "provider": model.provider,
            "precision": model.precision,
            "random_weights": model.random_weights,
            "text": model.has_text,
            "login": service.config.token is not None,
            "watch": watch,
            "abandoned": service.abandoned,  # requests dropped because their client had gone
        }
    )


async def info(request: Request) -> Response:
    service = _service(request)
    return JsonAnswer((await service.call(service.library.info)).as_dict())


def _refuse_cross_site(request: Request, service: Service) -> None:
    """A search or dupes report costs seconds of the only worker: another site's page may not make a visitor's
    browser ask for one (Origin / Sec-Fetch-Site), unless the request carries the bearer token (checked by the
    Guard), which no other site knows."""
    bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
    if not same_origin(request) and not (service.config.token and bearer):
        raise HttpError(403, "A search from another site's page is refused.")


async def query(request: Request) -> Response:
    service = _service(request)
    _refuse_cross_site(request, service)
    asked = await QueryRequest.read(request, service.config)
    library, model = service.library, service.model
    declared = sum(declared_pixels(photo) for photo in asked.photos)  # headers only (ms): nothing decoded yet
    wanted: dict[str, Any] = {"terms": asked.terms, "k": asked.k, "min_score": asked.min_score}

    def search() -> Any:
        pixels = None
        new = library.photos_to_embed(asked.terms)  # photos of the index answer with their stored embeddings
        if new:  # decoded under the upload rule: the size its header declares is checked first
            limit = model.preprocessor.max_pixels
            pixels = np.stack(
                [model.preprocessor.load_bytes(asked.photos[i], "the upload", max_declared_pixels=limit) for i in new]
            )
        if asked.scope == "fleet":
            return library.query_fleet(service.fleet(), model, box=asked.box, **wanted)
        return library.query(model, under_dir=asked.under, pixels=pixels, dates=asked.dates, kind=asked.kind, **wanted)

    async with service.client_slot(client_of(request), pixels=declared):
        found = await service.call_for(request, search)
    if asked.scope == "fleet":
        return JsonAnswer({"results": [hit.as_dict() for hit in found.hits], "collection": found.collection})
    return JsonAnswer({"results": [hit.as_dict() for hit in found.hits]})


async def similar(request: Request) -> Response:
    service = _service(request)
    key = _id(request)
    k = whole_number(request.query_params.get("k"), "k", service.config.default_k, 1, service.config.max_k)
    dates = DateRange.asked(
        request.query_params.get("after") or None, request.query_params.get("before") or None, API_DATES
    )
    async with service.client_slot(client_of(request)):
        await service.call(service.check_id, key)  # an unknown id is a 404, as for /api/image and /api/thumb
        kind = result_kind(request.query_params.get("type"))
        result = await service.call_for(
            request, lambda: service.library.query(key=key, k=k, exclude_self=True, dates=dates, kind=kind)
        )
    return JsonAnswer({"results": [hit.as_dict() for hit in result.hits]})


async def latest(request: Request) -> Response:
    """The images added last: the start page's grid, before anything is searched."""
    service = _service(request)
    k = whole_number(request.query_params.get("k"), "k", service.config.default_k, 1, service.config.max_k)
    found = await service.call(service.library.latest, k)
    kinds = {True: "video", False: "photo"}
    return JsonAnswer({"results": [{"id": key, "path": path, "type": kinds[is_frame_key(key)]} for key, path in found]})


async def dupes(request: Request) -> Response:
    """The duplicates report (the library checks the threshold), without the files' content hashes."""
    service = _service(request)
    _refuse_cross_site(request, service)
    threshold = number(request.query_params.get("threshold"), "threshold")
    dates = DateRange.asked(
        request.query_params.get("after") or None, request.query_params.get("before") or None, API_DATES
    )
    async with service.client_slot(client_of(request)):  # the same per-client slots as searches
        report = await service.dupes(request, threshold, request.query_params.get("under") or None, dates)
    groups = []
    for group in report.groups:
        data = group.as_dict()
        for file in data["files"]:
            file.pop("sha256", None)
        groups.append(data)
    return JsonAnswer({**report.as_dict(), "groups": groups})


# A photo is sent as itself, never as something a browser would run: no sniffing, no scripts, no frames.
PHOTO_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",  # another site's page cannot embed or read it
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=3600",
}


async def image(request: Request) -> Response:
    """The file itself (a video under any of its frames' ids); one byte range when asked (a player seeking)."""
    service = _service(request)
    photo = await service.call(service.photo, _id(request))
    name = urllib.parse.quote(displayable(photo.path).rsplit("/", 1)[-1])
    headers = {**PHOTO_HEADERS, "Accept-Ranges": "bytes", "Content-Disposition": f"inline; filename*=UTF-8''{name}"}
    try:
        asked = byte_range(request.headers.get("range"), photo.size)
    except HttpError:
        photo.close()
        raise
    if asked is None:
        headers["Content-Length"] = str(photo.size)
        return StreamingResponse(photo.chunks(), media_type=photo.media_type, headers=headers)
    start, length = asked
    headers["Content-Length"] = str(length)
    headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{photo.size}"
    return StreamingResponse(photo.chunks(start, length), status_code=206, media_type=photo.media_type, headers=headers)


async def thumb(request: Request) -> Response:
    """A JPEG (WebP for a transparent picture) made from the decoded photo (never its raw bytes), cached by id once
    the file has been checked."""
    service, key = _service(request), _id(request)
    photo = await service.call(service.photo, key)

    def make() -> bytes:
        try:
            stored = service.library.reader().catalog.frame_thumbnail(key)  # a video frame's, made when indexed
            if stored is not None:
                return stored
            return service.thumbs.get(key, lambda: io.BytesIO(photo.read()))
        except ImageDecodeError as exc:
            raise HttpError(422, f"Image {key} cannot be decoded for a thumbnail now: {exc.reason}.") from None
        finally:
            photo.close()

    data = await asyncio.get_running_loop().run_in_executor(None, make)
    return Response(
        data, media_type=media_type(data), headers={**PHOTO_HEADERS, "Cache-Control": "private, max-age=86400"}
    )
