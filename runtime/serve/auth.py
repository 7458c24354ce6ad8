"""Who may ask: the Host a tokenless service answers, the token (a bearer header, or the session cookie the login
form sets), and how wrong tokens are slowed.

- Without a token the service answers only requests whose Host is an IP address, `localhost` (or a name under
  it), or a name given with --allowed-host: a web page on another site cannot reach it through DNS rebinding
  (its requests carry that site's name as Host).
- With a token, the login form sets an HttpOnly, SameSite=Strict cookie holding a session value derived from the
  token (a leaked cookie is not the token), `Secure` when served over HTTPS. A request with a valid session is
  never locked out; bearer headers and login forms count toward the limit of wrong tokens per client address.
- The login form refuses cross-site posts (Origin / Sec-Fetch-Site, and a double-submit form key), so another
  site can neither sign a browser in nor lock its user out.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import secrets
import time
from pathlib import Path

import platformdirs
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from edge_search.runtime.files import write_atomically
from edge_search.runtime.serve.answers import error

STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "edge_search_session"
FORM_KEY_COOKIE = "edge_search_form"
# the page loads only its own files; uploads are previewed from blob: URLs
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with the login form's post
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


WRONG_TOKENS_ALLOWED = 5  # per client and window; then that client's token attempts are refused until it ends
WRONG_TOKEN_WINDOW_S = 60.0
SESSION_DAYS = 30


class WrongTokenLimiter:
    """Slows guessing: a client that sent `WRONG_TOKENS_ALLOWED` wrong tokens within the window gets 429 for every
    token it offers (the right one included, so the answer says nothing) until the window has passed. A browser
    already signed in is not affected: its session cookie is checked before the limiter."""

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
    """The client's address: the socket's peer, or what a proxy trusted with --forwarded-allow-ips says."""
    return request.client.host if request.client else "unknown"


class Sessions:
    """Signed-in browsers. A session cookie is a random nonce and its HMAC under the token: a leaked cookie does not
    give the token away, changing the token ends every session, and signing out ends that one session for good:
    its nonce is revoked server-side (in a small file under the user's state folder, kept until the cookie would
    have expired anyway), so a copy of the old cookie no longer works, even after a restart."""

    def __init__(self, token: str, revoked_file: Path | None = None):
        self._key = token.encode()
        self._file = revoked_file or Path(platformdirs.user_state_dir("edge-search")) / "revoked-sessions.json"
        self._revoked = self._load()

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._key, b"edge-search session v2 " + nonce.encode(), hashlib.sha256).hexdigest()

    def new(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, cookie: str) -> bool:
        nonce, _, signature = cookie.partition(".")
        if not nonce or not hmac.compare_digest(signature.encode(), self._sign(nonce).encode()):
            return False
        return nonce not in self._revoked

    def revoke(self, cookie: str) -> None:
        if self.valid(cookie):
            self._revoked[cookie.partition(".")[0]] = time.time() + SESSION_DAYS * 86400
            self._save()

    def _load(self) -> dict[str, float]:
        try:
            found = json.loads(self._file.read_text())
        except (OSError, ValueError):
            return {}
        now = time.time()
        return (
            {n: t for n, t in found.items() if isinstance(t, (int, float)) and t > now}
            if isinstance(found, dict)
            else {}
        )

    def _save(self) -> None:
        now = time.time()
        self._revoked = {n: t for n, t in self._revoked.items() if t > now}
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self._file, json.dumps(self._revoked).encode())
        except OSError:
            pass  # still revoked for as long as this service runs


def _host_name(host_header: str) -> str:
    """The name in a Host header, without its port ("[::1]:8765" -> "::1")."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host_header: str, allowed_names: tuple[str, ...]) -> bool:
    """An IP address, localhost (or a name under it), or a name the user allowed: never another site's name."""
    name = _host_name(host_header)
    if not name:
        return False
    if name == "localhost" or name.endswith(".localhost") or name in allowed_names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def same_origin(request: Request) -> bool:
    """Whether a browser says this request came from the service's own page (requests without such headers come
    from programs, not from another site's page)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def login_page(message: str, status: int = 200, form_key: str | None = None) -> HTMLResponse:
    form_key = form_key or secrets.token_urlsafe(24)
    page = (
        (STATIC / "login.html")
        .read_text(encoding="utf-8")
        .replace("{error}", html.escape(message))
        .replace("{form_key}", form_key)
    )
    response = HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)
    response.set_cookie(FORM_KEY_COOKIE, form_key, httponly=True, samesite="strict", path="/login")
    return response


async def login(request: Request) -> Response:
    """GET: the form; POST: the token offered (same origin only), checked in constant time; a session cookie."""
    if request.method == "GET":
        return login_page("")
    if not same_origin(request):
        return error(403, "A sign-in from another site's page is refused.")
    token = request.app.state.service.config.token
    limiter: WrongTokenLimiter = request.app.state.wrong_tokens
    client = client_of(request)
    async with request.form(max_files=0, max_fields=3, max_part_size=4096) as form:
        offered = str(form.get("token") or "")
        form_key = str(form.get("form_key") or "")
    expected_key = request.cookies.get(FORM_KEY_COOKIE, "")
    if not expected_key or not hmac.compare_digest(form_key.encode(), expected_key.encode()):
        return login_page("The sign-in form had expired: try again.", status=403)
    refused = limiter.refusal(client)
    if refused is not None:
        return login_page(refused, status=429)
    if not token or not hmac.compare_digest(offered.encode(), token.encode()):
        limiter.wrong(client)
        return login_page("That token is not the one this edge-search was started with.", status=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        request.app.state.sessions.new(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=SESSION_DAYS * 86400,
    )
    response.delete_cookie(FORM_KEY_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    """Forget this browser's session (POST from the page itself)."""
    if not same_origin(request):
        return error(403, "A sign-out from another site's page is refused.")
    sessions: Sessions | None = request.app.state.sessions
    if sessions is not None:
        sessions.revoke(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


class Guard(BaseHTTPMiddleware):
    """The Host check (without a token) and the token check (with one). With a token, only the login form and the
    page's own CSS/JS are open; a browser asking for a page without a session is sent to the login form, anything
    else gets a JSON 401."""

    OPEN_PATHS = ("/login", "/logout")
    OPEN_PREFIX = "/static/"

    def __init__(self, app: ASGIApp, token: str | None, allowed_hosts: tuple[str, ...] = ()):
        super().__init__(app)
        self.token = token.encode() if token else None
        self.allowed_hosts = tuple(h.lower() for h in allowed_hosts)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.token is None:
            if not host_allowed(request.headers.get("host", ""), self.allowed_hosts):
                return error(
                    421,
                    "This edge-search answers only requests addressed to it by IP address or localhost (start it "
                    "with --allowed-host NAME to be reached by name, or with a token).",
                )
            return await call_next(request)
        path = request.url.path
        if path in self.OPEN_PATHS or path.startswith(self.OPEN_PREFIX):
            return await call_next(request)
        if request.app.state.sessions.valid(request.cookies.get(SESSION_COOKIE, "")):
            return await call_next(request)  # signed in: never locked out by what others send
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            limiter: WrongTokenLimiter = request.app.state.wrong_tokens
            client = client_of(request)
            refused = limiter.refusal(client)
            if refused is not None:
                return error(429, refused, headers={"Retry-After": str(int(WRONG_TOKEN_WINDOW_S))})
            if hmac.compare_digest(header[7:].encode(), self.token):
                return await call_next(request)
            limiter.wrong(client)
        if request.method == "GET" and not path.startswith("/api/"):
            return RedirectResponse("/login", status_code=303)
        return error(401, "This edge-search needs a token: send `Authorization: Bearer TOKEN`.")
