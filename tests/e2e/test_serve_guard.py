"""Who may ask the real service (installed script, 127.0.0.1, stopped by its pid): forged proxy headers, the
login form, cross-site posts, sessions that are not the token, DNS rebinding, uploads that lie about their size."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from served import Service
from tests_support_images import lying_jpeg

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"

TOKEN = "a-long-enough-test-token"


@pytest.fixture
def guarded(indexed):
    env, _ = indexed
    service = Service(env, "--token", TOKEN, "--no-watch")
    try:
        service.wait_ready(headers={"Authorization": f"Bearer {TOKEN}"})
        yield service
    finally:
        service.stop()


def login_form(service: Service) -> tuple[str, str]:
    """(form key, its cookie) as a browser gets them from GET /login."""
    status, page, _ = service.request("/login")
    assert status == 200
    key = re.search(rb'name="form_key" type="hidden" value="([^"]+)"', page).group(1).decode()
    return key, f"edge_search_form={key}"


def post_login(service: Service, token: str, headers: dict | None = None, form: tuple[str, str] | None = None):
    key, cookie = form or login_form(service)
    body = urllib.parse.urlencode({"token": token, "form_key": key}).encode()
    return service.request(
        "/login",
        body,
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, **(headers or {})},
    )


def test_forged_forwarded_for_headers_do_not_escape_the_wrong_token_limit(guarded):
    statuses = [
        guarded.request("/api/health", headers={"Authorization": "Bearer wrong", "X-Forwarded-For": f"10.9.0.{i}"})[0]
        for i in range(8)
    ]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 3


def test_wrong_tokens_in_the_login_form_count_like_wrong_headers(guarded):
    statuses = [post_login(guarded, "wrong")[0] for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 2


def test_a_cross_site_login_is_refused_and_cannot_lock_the_user_out(guarded):
    for _ in range(8):
        assert post_login(guarded, "wrong", {"Origin": "http://evil.example"})[0] == 403
        assert post_login(guarded, "wrong", {"Sec-Fetch-Site": "cross-site"})[0] == 403
    key, cookie = login_form(guarded)
    no_key = urllib.parse.urlencode({"token": TOKEN}).encode()
    refused = guarded.request("/login", no_key, {"Content-Type": "application/x-www-form-urlencoded"})
    assert refused[0] == 403  # no form key: a page elsewhere cannot post the form
    assert guarded.request("/api/health", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_a_signed_in_browser_is_never_locked_out_and_its_cookie_is_not_the_token(guarded):
    session = set_cookie_of_a_sign_in(guarded)
    value = session.split(";", 1)[0].split("=", 1)[1]
    assert TOKEN not in value and "HttpOnly" in session and "SameSite=strict" in session.replace("Strict", "strict")
    assert "Secure" not in session  # plain HTTP on loopback; behind HTTPS the cookie is Secure
    for _ in range(8):  # someone on the same address guesses
        guarded.request("/api/health", headers={"Authorization": "Bearer guess"})
    assert guarded.request("/api/health", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 429
    assert guarded.request("/api/health", headers={"Cookie": f"edge_search_session={value}"})[0] == 200
    assert guarded.request("/api/health", headers={"Cookie": f"edge_search_session={TOKEN}"})[0] == 401
    status, _, _ = guarded.request("/logout", b"", {"Cookie": f"edge_search_session={value}"})
    assert status == 200  # urllib follows the 303 to the login form
    # signed out: a copy of the old cookie (another tab, a stolen copy) no longer works
    assert guarded.request("/api/health", headers={"Cookie": f"edge_search_session={value}"})[0] == 401


def test_a_signed_out_session_stays_signed_out_after_a_restart(indexed):
    env, _ = indexed
    first = Service(env, "--token", TOKEN, "--no-watch")
    try:
        first.wait_ready(headers={"Authorization": f"Bearer {TOKEN}"})
        cookie = signed_in_cookie(first)
        assert first.request("/api/health", headers={"Cookie": cookie})[0] == 200
        first.request("/logout", b"", {"Cookie": cookie})
    finally:
        first.stop()
    second = Service(env, "--token", TOKEN, "--no-watch")
    try:
        second.wait_ready(headers={"Authorization": f"Bearer {TOKEN}"})
        assert second.request("/api/health", headers={"Cookie": cookie})[0] == 401
        assert second.request("/api/health", headers={"Cookie": signed_in_cookie(second)})[0] == 200
    finally:
        second.stop()


def set_cookie_of_a_sign_in(service: Service) -> str:
    """The Set-Cookie header of the session a browser gets from a good sign-in (303 to the page)."""
    import http.client

    key, cookie = login_form(service)
    body = urllib.parse.urlencode({"token": TOKEN, "form_key": key})
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    connection.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    answer = connection.getresponse()
    assert answer.status == 303
    return next(v for k, v in answer.getheaders() if k.lower() == "set-cookie" and "edge_search_session" in v)


def signed_in_cookie(service: Service) -> str:
    """The session cookie a browser gets from a good sign-in, as a Cookie header."""
    return set_cookie_of_a_sign_in(service).split(";", 1)[0]


def test_without_a_token_only_loopback_and_allowed_host_names_are_answered(indexed):
    env, _ = indexed
    service = Service(env, "--no-watch", "--allowed-host", "nas.local")
    try:
        service.wait_ready()
        port = service.port
        assert service.request("/api/info", headers={"Host": f"attacker.example:{port}"})[0] == 421
        assert service.request("/api/image/1", headers={"Host": "attacker.example"})[0] == 421
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", f"nas.local:{port}"):
            assert service.request("/api/info", headers={"Host": host})[0] == 200, host
    finally:
        service.stop()


def test_an_upload_declaring_huge_pixels_is_refused_before_decoding(indexed):
    env, photos = indexed
    service = Service(env, "--no-watch")
    try:
        service.wait_ready()
        status, body, _ = service.upload(lying_jpeg())
        assert status == 413 and "4225 megapixels" in body["error"]  # 65000 x 65000, from its header alone
        assert service.upload((photos / "img01.png").read_bytes())[0] == 200
    finally:
        service.stop()
