"""The HTTP API: Starlette routes over one `Library` and one warm `Model`.

Every library call runs in one worker thread (SQLite connections and the onnxruntime session stay in
the thread that opened them, and two cores are better spent on one query at a time than on two).
Errors are JSON `{"error": ...}` with a 4xx/5xx status; an upload is size-limited before it is read.
The page at `/` is static HTML + JS from `static/` (no build step, nothing from a CDN). With watching
on, a `LibraryWatcher` thread is the library's single writer while the service runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge_search.runtime.errors import (
    ClusterError,
    EdgeSearchError,
    ImageDecodeError,
    IndexCorrupt,
    IndexMismatch,
    IndexMissing,
    StorageError,
    UsageError,
)
from edge_search.runtime.library import Library, Model
from edge_search.runtime.serve.thumbnails import ThumbnailCache
from edge_search.runtime.serve.watch import LibraryWatcher

STATIC = Path(__file__).parent / "static"
# the page loads only its own files; uploads are previewed from blob: URLs
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

HTTP_STATUS: dict[type, int] = {
    UsageError: 400,
    ImageDecodeError: 400,
    IndexMissing: 503,
    IndexMismatch: 409,
    IndexCorrupt: 500,
    StorageError: 507,
    ClusterError: 502,  # the Milvus server behind scope=fleet is down
}
TOKEN_COOKIE = "edge_search_token"


@dataclass
class ServiceConfig:
    token: str | None = None
    max_upload_bytes: int = 32 * 2**20
    default_k: int = 24
    max_k: int = 500
    watch: bool = False  # keep the library current (the service becomes its writer)
    settle_s: float = 1.0  # quiet time after the last file event before indexing
    rescan_s: float = 300.0  # full rescan interval (events can be lost; network shares send none)
    log: Callable[[str], None] = field(default=lambda message: None)
    milvus: str | None = None  # a fleet collection: `scope=fleet` queries search every synced box
    milvus_collection: str | None = None
    milvus_token: str | None = None


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Service:
    """What the routes share: the library, the model, the worker thread, the thumbnail cache."""

    def __init__(self, library: Library, model: Model, config: ServiceConfig):
        library.close()  # its reader is reopened in the worker thread, which alone uses it from now on
        self.library = library
        self.model = model
        self.config = config
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="library")
        self.thumbs = ThumbnailCache(library.directory / "thumbs")
        self.dupes_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dupes")  # minutes on a big library:
        self.dupes_library = Library(library.directory)  # not in the query worker, so searches go on meanwhile
        self._dupes_cached: tuple[tuple, Any] | None = None
        self._fleet: Any = None
        self.watcher = (
            LibraryWatcher(library, model, settle_s=config.settle_s, rescan_s=config.rescan_s, log=config.log)
            if config.watch
            else None
        )

    def start(self) -> None:
        if self.watcher is not None:
            self.watcher.start()

    async def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.worker, lambda: function(*args, **kwargs))

    async def dupes(self, threshold: float | None, under: str | None) -> Any:
        """The duplicates report, computed once per (generation, threshold, folder)."""

        def compute():
            generation = self.dupes_library.reader().meta.generation
            key = (generation, threshold, under)
            if self._dupes_cached is None or self._dupes_cached[0] != key:  # one report kept: the latest asked for
                self._dupes_cached = (key, self.dupes_library.dupes(threshold, under_dir=under))
            return self._dupes_cached[1]

        return await asyncio.get_running_loop().run_in_executor(self.dupes_worker, compute)

    def fleet(self) -> Any:
        """The Milvus collection, opened on the first fleet query and kept (in the worker thread)."""
        if self.config.milvus is None:
            raise HttpError(400, "This service was started without --milvus: there is no fleet to search.")
        if self._fleet is None:
            self._fleet = self.library.open_fleet(
                self.config.milvus, self.model, collection=self.config.milvus_collection, token=self.config.milvus_token
            )
        return self._fleet

    def close(self) -> None:
        if self._fleet is not None:
            self.worker.submit(self._fleet.close).result()
        if self.watcher is not None:
            self.watcher.stop()  # an interrupted pass commits what it embedded
        self.dupes_worker.submit(self.dupes_library.close).result()
        self.dupes_worker.shutdown()
        self.worker.submit(self.library.close).result()
        self.worker.shutdown()

    # -- helpers run in the worker ------------------------------------------------------------------
    def path_of(self, key: int) -> str:
        path = self.library.reader().catalog.paths_for([key]).get(key)
        if path is None:
            raise HttpError(404, f"No indexed image has id {key}.")
        return path


def _text_field(value: object) -> str | None:
    """A form field sent as text (a file sent where a number belongs counts as absent)."""
    return value if isinstance(value, str) else None


def _int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise HttpError(400, f"{name} must be a whole number, not {value!r}.") from None
    if not low <= number <= high:
        raise HttpError(400, f"{name} must be between {low} and {high}.")
    return number


def _float(value: str | None, name: str) -> float | None:
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


def _results(result) -> dict:
    return {"results": [{"rank": h.rank, "score": round(h.score, 6), "path": h.path, "id": h.key} for h in result.hits]}


def make_app(library: Library, model: Model, config: ServiceConfig | None = None) -> Starlette:
    config = config or ServiceConfig()
    service = Service(library, model, config)

    async def health(request: Request) -> Response:
        count = await service.call(lambda: library.reader().catalog.count())
        watch = service.watcher.status.as_dict() if service.watcher else {"mode": "off"}
        return JSONResponse(
            {
                "ok": True,
                "count": count,
                "provider": model.provider,
                "precision": model.precision,
                "random_weights": model.random_weights,
                "text": model.has_text,
                "watch": watch,
            }
        )

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return login_page("")
        async with request.form(max_files=0, max_fields=2, max_part_size=4096) as form:
            offered = str(form.get("token") or "")
        if not config.token or not hmac.compare_digest(offered.encode(), config.token.encode()):
            return login_page("That token is not the one this edge-search was started with.", status=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(TOKEN_COOKIE, config.token, httponly=True, samesite="strict", max_age=30 * 86400)
        return response

    async def info(request: Request) -> Response:
        return JSONResponse((await service.call(library.info)).as_dict())

    async def query(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_upload_bytes + 64 * 1024:
            await _drain(request, cap=8 * config.max_upload_bytes)  # so the client reads the 413, not a reset
            raise HttpError(413, f"The upload is larger than {config.max_upload_bytes // 2**20} MiB.")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HttpError(400, "Send the image as multipart/form-data in a field named `image`.")
        async with request.form(max_files=1, max_fields=10, max_part_size=config.max_upload_bytes) as form:
            upload = form.get("image")
            text = str(form.get("text") or "").strip() or None
            data = None
            if upload is not None and not isinstance(upload, str):
                data = await upload.read(config.max_upload_bytes + 1)
                if len(data) > config.max_upload_bytes:
                    raise HttpError(413, f"The upload is larger than {config.max_upload_bytes // 2**20} MiB.")
                if not data:
                    raise HttpError(400, "The uploaded file is empty.")
            if data is None and text is None:
                raise HttpError(400, "No file in the form field `image` (and no `text`).")
            k = _int(_text_field(form.get("k")), "k", config.default_k, 1, config.max_k)
            min_score = _float(_text_field(form.get("min_score")), "min_score")
            under = form.get("under") or None
            scope = str(form.get("scope") or "box")
            box = str(form.get("box") or "").strip() or None
        if scope not in ("box", "fleet"):
            raise HttpError(400, f"scope is `box` (this index) or `fleet` (every box synced to Milvus), not {scope!r}.")
        if scope == "fleet":
            if under:
                raise HttpError(400, "`under` works on this box's index, not with scope=fleet.")
            found = await service.call(
                lambda: library.query_fleet(
                    service.fleet(), model, images=[data] if data else [], text=text, k=k, min_score=min_score, box=box
                )
            )
            return JSONResponse({"results": [h.as_dict() for h in found.hits], "collection": found.collection})
        result = await service.call(
            library.query, model, images=[data] if data else [], text=text, k=k, min_score=min_score, under_dir=under
        )
        return JSONResponse(_results(result))

    async def similar(request: Request) -> Response:
        key = request.path_params["id"]
        k = _int(request.query_params.get("k"), "k", config.default_k, 1, config.max_k)
        result = await service.call(library.query, key=key, k=k, exclude_self=True)
        return JSONResponse(_results(result))

    async def dupes(request: Request) -> Response:
        threshold = _float(request.query_params.get("threshold"), "threshold")
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise HttpError(400, "threshold must be a cosine similarity in (0, 1].")
        report = await service.dupes(threshold, request.query_params.get("under") or None)
        groups = []
        for group in report.groups:
            data = group.as_dict()
            for file in data["files"]:
                file.pop("sha256", None)
            groups.append(data)
        return JSONResponse({**report.as_dict(), "groups": groups})

    async def image(request: Request) -> Response:
        path = await service.call(service.path_of, request.path_params["id"])
        if not os.path.isfile(path):
            raise HttpError(404, "The file is no longer there (moved or deleted since it was indexed).")
        return FileResponse(path)

    async def thumb(request: Request) -> Response:
        key = request.path_params["id"]
        path = await service.call(service.path_of, key)
        if not os.path.isfile(path):
            raise HttpError(404, "The file is no longer there (moved or deleted since it was indexed).")
        data = await asyncio.get_running_loop().run_in_executor(None, service.thumbs.get, key, path)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HttpError)  # registered for HttpError only
        return error(exc.status, str(exc))

    async def on_library_error(request: Request, exc: Exception) -> Response:
        status = next((code for cls, code in HTTP_STATUS.items() if isinstance(exc, cls)), 500)
        if isinstance(exc, ImageDecodeError):
            return error(status, f"The uploaded file cannot be searched with: {exc.reason}.")
        return error(status, str(exc))

    async def on_starlette_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return error(status, getattr(exc, "detail", None) or "Request failed.")

    routes = [
        Route("/", page),
        Route("/login", login, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/health", health),
        Route("/api/info", info),
        Route("/api/query", query, methods=["POST"]),
        Route("/api/similar/{id:int}", similar),
        Route("/api/dupes", dupes),
        Route("/api/image/{id:int}", image),
        Route("/api/thumb/{id:int}", thumb),
    ]
    middleware = [Middleware(TokenAuth, token=config.token)] if config.token else []

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        service.start()
        yield
        service.close()  # SIGTERM: uvicorn finishes the requests in flight, then this closes the catalog

    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            HttpError: on_http_error,
            EdgeSearchError: on_library_error,
            HTTPException: on_starlette_error,
        },
    )
    app.state.service = service
    return app


def login_page(message: str, status: int = 200) -> HTMLResponse:
    page = (STATIC / "login.html").read_text(encoding="utf-8").replace("{error}", html.escape(message))
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)


class TokenAuth(BaseHTTPMiddleware):
    """Every request needs the token: `Authorization: Bearer TOKEN`, or the cookie the login form sets.
    Only the login form and the page's own CSS/JS are open; a browser asking for a page without the
    token is sent to the login form, anything else gets a JSON 401."""

    OPEN_PATHS = ("/login",)
    OPEN_PREFIX = "/static/"

    def __init__(self, app, token: str):
        super().__init__(app)
        self.token = token.encode()

    async def dispatch(self, request: Request, call_next):
        header = request.headers.get("authorization", "")
        offered = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE, "")
        if request.url.path in self.OPEN_PATHS or request.url.path.startswith(self.OPEN_PREFIX):
            return await call_next(request)
        if not hmac.compare_digest(offered.encode(), self.token):
            if request.method == "GET" and not request.url.path.startswith("/api/"):
                return RedirectResponse("/login", status_code=303)
            return error(401, "This edge-search needs a token: send `Authorization: Bearer TOKEN`.")
        return await call_next(request)
