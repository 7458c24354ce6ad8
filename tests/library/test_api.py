"""The HTTP API in process: `make_app` over a real Library and Model, spoken to through Starlette's test client.

The same routes, handlers and error mapping as `edge-search serve` (tests/e2e/test_serve.py runs the installed
script over real HTTP); here they run in milliseconds, so every case of the API is in the fast tier.
"""

from __future__ import annotations

import io

import pytest
from starlette.testclient import TestClient

from edge_search.runtime.library import Library
from edge_search.runtime.serve.app import make_app
from edge_search.runtime.serve.config import ServiceConfig

TOKEN = "a-token-of-twenty-four-chars"


@pytest.fixture
def photos(model, tmp_path, photo_dir):
    with Library(tmp_path / "index") as library:
        library.index(model, [photo_dir])
    return photo_dir


def client(model, index, **config) -> TestClient:
    return TestClient(make_app(Library(index), model, ServiceConfig(**config)), base_url="http://localhost")


@pytest.fixture
def api(model, photos, tmp_path):
    with client(model, tmp_path / "index", max_upload_bytes=2**20) as test_client:
        yield test_client


def upload(api: TestClient, data: bytes, **fields: str):
    return api.post("/api/query", files={"image": ("photo", io.BytesIO(data))}, data=fields)


def test_an_upload_returns_ranked_results_whose_ids_lead_to_the_file_its_thumbnail_and_similar_ones(api, photos):
    target = photos / "img01.png"
    answer = upload(api, target.read_bytes(), k="3")
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert len(results) == 3 and (results[0]["rank"], results[0]["path"]) == (1, str(target))
    assert set(results[0]) == {"rank", "score", "path", "id", "taken", "type"}
    assert results[0]["score"] == pytest.approx(1, abs=1e-4)
    key = results[0]["id"]
    assert api.get(f"/api/image/{key}").content == target.read_bytes()
    thumb = api.get(f"/api/thumb/{key}")
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    similar = api.get(f"/api/similar/{key}?k=4").json()["results"]
    assert len(similar) == 4 and str(target) not in [r["path"] for r in similar]
    inside = upload(api, target.read_bytes(), k="5", under=str(photos / "sub")).json()["results"]
    assert len(inside) == 3 and all(r["path"].startswith(str(photos / "sub")) for r in inside)


def test_info_and_health_describe_the_library_and_the_model(api, photos):
    info = api.get("/api/info").json()
    assert info["count"] == 12 and info["roots"][0]["path"] == str(photos)
    health = api.get("/api/health").json()
    assert health["ok"] and health["count"] == 12 and health["precision"] == "fp32" and health["watch"]["mode"] == "off"


@pytest.mark.parametrize(
    "case, status",
    [("corrupt", 400), ("empty", 400), ("too large", 413), ("not an image", 400), ("k not a number", 400)],
)
def test_bad_uploads_get_a_json_4xx_naming_the_problem_and_the_service_goes_on(api, photos, case, status):
    good = (photos / "img01.png").read_bytes()
    data = {"corrupt": good[:300], "empty": b"", "too large": b"\0" * (2**20 + 10), "not an image": b"hello"}
    answer = upload(api, data.get(case, good), **({"k": "zero"} if case == "k not a number" else {}))
    assert answer.status_code == status and answer.json()["error"]
    assert upload(api, good).status_code == 200


def test_a_query_without_an_image_or_words_is_a_400(api):
    answer = api.post("/api/query", data={"k": "3"})
    assert answer.status_code == 400 and "multipart" in answer.json()["error"]
    answer = api.post("/api/query", files={"other": ("x", b"1")}, data={"k": "3"})
    assert answer.status_code == 400 and "image" in answer.json()["error"]


@pytest.mark.parametrize("route", ["image", "thumb", "similar"])
@pytest.mark.parametrize("key", ["999999", "99999999999999999999999", "-1"])
def test_an_unknown_or_out_of_range_id_is_a_json_404_on_every_route(api, route, key):
    answer = api.get(f"/api/{route}/{key}")
    assert answer.status_code == 404 and answer.headers["content-type"] == "application/json"


def test_a_bad_dupes_threshold_is_a_400_from_the_library_check(api):
    answer = api.get("/api/dupes?threshold=1.5")
    assert answer.status_code == 400 and "(0, 1]" in answer.json()["error"]
    assert api.get("/api/dupes").json()["files"] == 12


def sign_in(api: TestClient, token: str, **kwargs):
    """The login form as a browser posts it: GET /login (its form key, also set as a cookie), then POST."""
    import re

    key = re.search(r'name="form_key" type="hidden" value="([^"]+)"', api.get("/login").text).group(1)
    return api.post("/login", data={"token": token, "form_key": key}, **kwargs)


def test_with_a_token_every_route_but_login_and_static_files_needs_it(model, photos, tmp_path):
    with client(model, tmp_path / "index", token=TOKEN) as api:
        assert api.get("/api/health").status_code == 401
        assert api.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        page = api.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert api.get("/login").status_code == 200
        assert sign_in(api, "wrong").status_code == 401
        assert api.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        logged_in = sign_in(api, TOKEN, follow_redirects=False)
        assert logged_in.status_code == 303 and "httponly" in logged_in.headers["set-cookie"].lower()
        assert TOKEN not in logged_in.headers["set-cookie"]  # the session value is derived, not the token
        assert api.get("/api/health").status_code == 200  # the cookie the login set


def test_wrong_tokens_from_one_client_are_slowed_to_a_429_that_even_the_right_token_gets(model, photos, tmp_path):
    """(A browser already signed in is not: see tests/e2e/test_serve_guard.py.)"""
    from edge_search.runtime.serve.auth import WRONG_TOKENS_ALLOWED

    with client(model, tmp_path / "index", token=TOKEN) as api:
        for _ in range(WRONG_TOKENS_ALLOWED - 1):
            assert api.get("/api/health", headers={"Authorization": "Bearer guess"}).status_code == 401
        assert sign_in(api, "guess").status_code == 401  # the form counts too
        refused = api.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "wait" in refused.json()["error"]
        assert sign_in(api, TOKEN).status_code == 429


def test_the_latest_images_are_listed_newest_first_for_the_start_page(api, photos):
    latest = api.get("/api/latest?k=5").json()["results"]
    assert len(latest) == 5 and latest[0] == {"id": latest[0]["id"], "path": latest[0]["path"], "type": "photo"}
    assert [r["id"] for r in latest] == sorted((r["id"] for r in latest), reverse=True)
    assert api.get(f"/api/thumb/{latest[0]['id']}").status_code == 200


def test_several_weighted_photos_and_an_unlike_one_combine_by_the_same_rule_as_the_library(
    api, photos, model, tmp_path
):
    from edge_search.runtime.jobs.combined_query import Term

    a, b, c = photos / "img01.png", photos / "img02.webp", photos / "img03.bmp"
    files = [
        ("image", ("a", io.BytesIO(a.read_bytes()))),
        ("image", ("b", io.BytesIO(b.read_bytes()))),
        ("unlike_image", ("c", io.BytesIO(c.read_bytes()))),
    ]
    answer = api.post("/api/query", files=files, data={"image_weight": ["2", "0.5"], "k": "12"})
    assert answer.status_code == 200, answer.text
    terms = [Term(image=a, weight=2), Term(image=b, weight=0.5), Term(image=c, weight=-1)]
    expected = Library(tmp_path / "index").query(model, terms=terms, k=12)
    assert [r["path"] for r in answer.json()["results"]] == [hit.path for hit in expected.hits]
    assert [r["score"] for r in answer.json()["results"]] == pytest.approx([h.score for h in expected.hits], abs=1e-5)


def test_a_date_range_and_words_without_a_text_tower_are_checked_like_everything_else(api, photos):
    data = (photos / "img01.png").read_bytes()
    now = upload(api, data, k="12", after="2000").json()["results"]
    assert len(now) == 12 and all(r["taken"] for r in now)  # dated at index time: their files' modification times
    assert upload(api, data, k="12", before="2000").json()["results"] == []
    bad = upload(api, data, after="yesterday")
    assert bad.status_code == 400 and bad.json()["error"].startswith("after takes a year")
    words = upload(api, data, text="a dog")
    assert words.status_code == 400 and "CLIP bundle" in words.json()["error"]
    dupes = api.get("/api/dupes?before=2000")
    assert dupes.status_code == 200 and dupes.json()["groups"] == []
