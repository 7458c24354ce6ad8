"""The HTTP API: Starlette routes (`routes`) over one `Service` (a `Library` and a warm `Model`).

Errors are JSON `{"error": ...}` with a 4xx/5xx status: the library's exception family maps to statuses in one
table here. The page at `/` is static HTML + JS from `static/` (no build step, nothing from a CDN). With
watching on, a `LibraryWatcher` thread is the library's single writer while the service runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
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
from edge_search.runtime.serve import routes
from edge_search.runtime.serve.answers import error
from edge_search.runtime.serve.auth import STATIC, Guard, Sessions, WrongTokenLimiter, login, logout
from edge_search.runtime.serve.config import HttpError, ServiceConfig
from edge_search.runtime.serve.service import Service
from edge_search.runtime.serve.watch import LibraryWatcher

HTTP_STATUS: dict[type, int] = {
    UsageError: 400,
    ImageDecodeError: 400,
    IndexMissing: 503,
    IndexMismatch: 409,
    IndexCorrupt: 500,
    StorageError: 507,
    ClusterError: 502,  # the Milvus server behind scope=fleet is down
}

ROUTES = [
    Route("/", routes.page),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
    Route("/api/health", routes.health),
    Route("/api/info", routes.info),
    Route("/api/query", routes.query, methods=["POST"]),
    Route("/api/similar/{id:int}", routes.similar),
    Route("/api/dupes", routes.dupes),
    Route("/api/latest", routes.latest),
    Route("/api/image/{id:int}", routes.image),
    Route("/api/thumb/{id:int}", routes.thumb),
]


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


def make_app(library: Library, model: Model, config: ServiceConfig | None = None) -> Starlette:
    config = config or ServiceConfig()
    watcher = (
        LibraryWatcher(library, model, settle_s=config.settle_s, rescan_s=config.rescan_s, log=config.log)
        if config.watch
        else None
    )
    service = Service(library, model, config, watcher)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        service.start()
        yield
        service.close()  # SIGTERM: uvicorn finishes the requests in flight, then this closes the catalog

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(Guard, token=config.token, allowed_hosts=config.allowed_hosts)],
        lifespan=lifespan,
        exception_handlers={
            HttpError: on_http_error,
            EdgeSearchError: on_library_error,
            HTTPException: on_starlette_error,
        },
    )
    app.state.service = service
    app.state.wrong_tokens = WrongTokenLimiter()
    app.state.sessions = Sessions(config.token) if config.token else None
    return app


__all__ = ["HTTP_STATUS", "ServiceConfig", "make_app"]
