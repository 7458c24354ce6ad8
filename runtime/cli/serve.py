"""`edge-search serve`: options in, the HTTP service out (runs until SIGTERM or Ctrl-C)."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Annotated, Optional

import typer

from edge_search.runtime.cli.app import app
from edge_search.runtime.cli.options import (
    CollectionOpt,
    IndexOpt,
    MilvusOpt,
    MilvusTokenOpt,
    ModelOpt,
    VerboseOpt,
    with_model_options,
)
from edge_search.runtime.cli.render import err, model_notes
from edge_search.runtime.errors import AddressUnavailable, UsageError
from edge_search.runtime.library import Library
from edge_search.runtime.options import ModelOptions

LOOPBACK_NAMES = ("localhost",)
MIN_TOKEN_LENGTH = 16  # for an address others can reach: a token short enough to guess is no lock
PLACEHOLDER_TOKENS = {"change-me", "changeme", "secret", "password", "token", "paste-your-token-here"}  # README
MAKE_A_TOKEN = 'python3 -c "import secrets; print(secrets.token_urlsafe(24))"'


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_token(host: str, token: str | None, no_auth: bool) -> None:
    """A non-loopback address needs a token that cannot be guessed (or an explicit --no-auth)."""
    if _is_loopback(host):
        return
    if not token and not no_auth:
        raise UsageError(
            f"Refusing to listen on {host} without a token: anyone on the network could search and "
            f"download your photos. Pass --token (or EDGE_SEARCH_TOKEN; make one with {MAKE_A_TOKEN}), or "
            "--no-auth if you mean it."
        )
    if token and (token.lower() in PLACEHOLDER_TOKENS or len(token) < MIN_TOKEN_LENGTH):
        weak = "docs/serve.md's placeholder" if token.lower() in PLACEHOLDER_TOKENS else f"{len(token)} characters"
        raise UsageError(
            f"Refusing to listen on {host} with a weak token ({weak}): on a network it must be at least "
            f"{MIN_TOKEN_LENGTH} characters and not a placeholder. Make one with {MAKE_A_TOKEN}."
        )


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads and before anything says "serving"."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(address[:2], family=family)
    except OSError as exc:
        reason = "is in use by another program" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise AddressUnavailable(
            f"Cannot listen on {host}:{port}: the address {reason}. Choose another with --port (or "
            "EDGE_SEARCH_PORT), or stop what holds it."
        ) from None


def _serve_imports():
    try:
        import uvicorn

        from edge_search.runtime.serve.app import ServiceConfig, make_app
    except ImportError as exc:
        raise UsageError(
            f"`edge-search serve` needs {exc.name}: install the serve extra (pip install 'edge-search[serve]')."
        ) from None
    return uvicorn, ServiceConfig, make_app


HostOpt = Annotated[str, typer.Option(help="Address to listen on.", envvar="EDGE_SEARCH_HOST")]
PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.", envvar="EDGE_SEARCH_PORT")]
TokenOpt = Annotated[
    Optional[str],
    typer.Option(help="Require this token on every request (Authorization: Bearer).", envvar="EDGE_SEARCH_TOKEN"),
]
NoAuthOpt = Annotated[
    bool,
    typer.Option(
        "--no-auth",
        help="Allow a non-loopback address without a token (anyone on the network can search and download "
        "your photos).",
    ),
]
MaxUploadOpt = Annotated[int, typer.Option(min=1, help="Largest accepted upload, MiB.")]
AllowedHostOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--allowed-host",
        help="Without a token the service answers only requests addressed to an IP address or localhost (no "
        "DNS rebinding); also answer this host name (e.g. nas.local). Repeatable.",
    ),
]
ForwardedAllowIpsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--forwarded-allow-ips",
        help="Behind a reverse proxy: the proxy addresses (comma-separated) whose X-Forwarded-For/-Proto are "
        "believed. Unset: nobody's are (a client cannot pose as another to the wrong-token limit).",
        envvar="EDGE_SEARCH_FORWARDED_ALLOW_IPS",
    ),
]
WatchOpt = Annotated[
    bool,
    typer.Option(
        "--watch/--no-watch",
        help="Keep the index current: watch the remembered folders and index what changes (the service "
        "becomes the index's writer). --no-watch: a read-only replica.",
    ),
]
RescanOpt = Annotated[
    float,
    typer.Option(
        min=5,
        help="Seconds between full rescans of the watched folders (file events can be lost, and network "
        "shares send none).",
        envvar="EDGE_SEARCH_RESCAN",
    ),
]


@app.command(
    help="Serve searches over HTTP from one warm process: a page to search from a browser at "
    "http://HOST:PORT/ (http://127.0.0.1:8765/ by default) and a JSON API (docs/serve.md); it keeps the index "
    "current by watching its folders. Binds 127.0.0.1 unless told otherwise; any other address needs a token "
    "(or an explicit --no-auth)."
)
@with_model_options(batch=False)
def serve(
    index: IndexOpt = None,
    model: ModelOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8765,
    token: TokenOpt = None,
    no_auth: NoAuthOpt = False,
    max_upload_mb: MaxUploadOpt = 32,
    allowed_host: AllowedHostOpt = None,
    forwarded_allow_ips: ForwardedAllowIpsOpt = None,
    watch: WatchOpt = True,
    rescan: RescanOpt = 300.0,
    milvus: MilvusOpt = None,
    collection: CollectionOpt = None,
    milvus_token: MilvusTokenOpt = None,
    verbose: VerboseOpt = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    _check_token(host, token, no_auth)
    uvicorn, ServiceConfig, make_app = _serve_imports()
    library = Library(index)
    library.reader()  # no index yet: say so before listening or loading a model
    listening = _listen(host, port)  # a port in use: say so before loading a model, and never "serving"
    opened = library.open_model(model, model_options)
    model_notes(opened, library.directory, verbose)
    library.check_model(opened)
    config = ServiceConfig(
        token=token,
        allowed_hosts=tuple(allowed_host or ()),
        max_upload_bytes=max_upload_mb * 2**20,
        watch=watch,
        rescan_s=rescan,
        log=_log,
        milvus=milvus,
        milvus_collection=collection,
        milvus_token=milvus_token,
    )
    service = make_app(library, opened, config)
    err.print(
        f"edge-search serving {library.directory} on http://{host}:{port}/ · {opened.provider} {opened.precision}"
        + (" · token required" if token else "")
        + (" · watching its folders" if watch else " · read-only")
    )
    _run_server(uvicorn, service, listening, host, port, forwarded_allow_ips)


def _run_server(uvicorn, service, listening, host: str, port: int, forwarded_allow_ips: str | None) -> None:
    """uvicorn on the socket already bound, proxy headers believed only from the proxies named."""
    server_config = uvicorn.Config(
        service,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_graceful_shutdown=10,
    )
    _quiet_exit_server(uvicorn)(server_config).run(sockets=[listening])


def _log(message: str) -> None:
    import time

    err.print(f"{time.strftime('%H:%M:%S')} {message}")


def _quiet_exit_server(uvicorn):
    """uvicorn's Server, except that SIGTERM / Ctrl-C end it with exit 0 after the graceful shutdown
    (uvicorn re-raises the signal afterwards, which makes a clean stop look like a crash, 143)."""
    import contextlib
    import signal

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    return Server
