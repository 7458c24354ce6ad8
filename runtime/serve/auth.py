"""The token: every request needs it (a bearer header, or the cookie the login form sets)."""

from __future__ import annotations

import hmac
import html
import time
from pathlib import Path

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "edge_search_token"
# the page loads only its own files; uploads are previewed from blob: URLs
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


WRONG_TOKENS_ALLOWED = 5  # per client and window; then every request of that client is refused until it ends
WRONG_TOKEN_WINDOW_S = 60.0


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class WrongTokenLimiter:
    """Slows guessing: a client that sent `WRONG_TOKENS_ALLOWED` wrong tokens within the window gets 429 for
    every request (the right token included, so the answer says nothing) until the window has passed."""

    def __init__(self, allowed: int = WRONG_TOKENS_ALLOWED, window_s: float = WRONG_TOKEN_WINDOW_S):
        self.allowed, self.window_s = allowed, window_s
        self._wrong: dict[str, list[float]] = {}

    def _recent(self, client: str) -> list[float]:
        now = time.monotonic()
        recent = [t for t in self._wrong.get(client, []) if now - t < self.window_s]
        if recent:
            self._wrong[client] = recent
        else:
            self._wrong.pop(client, None)
        return recent

    def locked_out_for(self, client: str) -> float:
        """Seconds until this client may try again (0: it may)."""
        recent = self._recent(client)
        if len(recent) < self.allowed:
            return 0.0
        return max(0.0, recent[0] + self.window_s - time.monotonic())

    def wrong(self, client: str) -> None:
        self._wrong[client] = [*self._recent(client), time.monotonic()]

    def refusal(self, client: str) -> str | None:
        """Why this client is refused now, or None."""
        wait = self.locked_out_for(client)
        return f"Too many wrong tokens from this address: wait {wait:.0f} s." if wait else None


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def login_page(message: str, status: int = 200) -> HTMLResponse:
    page = (STATIC / "login.html").read_text(encoding="utf-8").replace("{error}", html.escape(message))
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)


async def login(request: Request) -> Response:
    """GET: the form; POST: the token offered, checked in constant time, kept in an HttpOnly cookie."""
    if request.method == "GET":
        return login_page("")
    token = request.app.state.service.config.token
    limiter: WrongTokenLimiter = request.app.state.wrong_tokens
    client = client_of(request)
    refused = limiter.refusal(client)
    if refused is not None:
        return login_page(refused, status=429)
    async with request.form(max_files=0, max_fields=2, max_part_size=4096) as form:
        offered = str(form.get("token") or "")
    if not token or not hmac.compare_digest(offered.encode(), token.encode()):
        limiter.wrong(client)
        return login_page("That token is not the one this edge-search was started with.", status=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", max_age=30 * 86400)
    return response


class TokenAuth(BaseHTTPMiddleware):
    """Only the login form and the page's own CSS/JS are open; a browser asking for a page without the
    token is sent to the login form, anything else gets a JSON 401."""

    OPEN_PATHS = ("/login",)
    OPEN_PREFIX = "/static/"

    def __init__(self, app: ASGIApp, token: str):
        super().__init__(app)
        self.token = token.encode()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        header = request.headers.get("authorization", "")
        offered = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE, "")
        if request.url.path in self.OPEN_PATHS or request.url.path.startswith(self.OPEN_PREFIX):
            return await call_next(request)
        limiter: WrongTokenLimiter = request.app.state.wrong_tokens
        client = client_of(request)
        refused = limiter.refusal(client)
        if refused is not None:
            return error(429, refused, headers={"Retry-After": str(int(WRONG_TOKEN_WINDOW_S))})
        if not hmac.compare_digest(offered.encode(), self.token):
            if offered:  # a wrong token, not a first visit without one
                limiter.wrong(client)
            if request.method == "GET" and not request.url.path.startswith("/api/"):
                return RedirectResponse("/login", status_code=303)
            return error(401, "This edge-search needs a token: send `Authorization: Bearer TOKEN`.")
        return await call_next(request)
