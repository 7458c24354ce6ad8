"""`edge-search serve`: the real service in a subprocess (installed script, 127.0.0.1 only, stopped by
its pid), spoken to over real HTTP."""

from __future__ import annotations

import json
import os
import threading

import pytest
from cluster import free_port
from served import Service

from conftest import cli_env, run_script

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"


@pytest.fixture
def service(indexed):
    env, _ = indexed
    running = Service(env, "--max-upload-mb", "1")
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def test_a_query_upload_returns_ranked_results_and_ids_lead_to_files_and_thumbnails(service, indexed):
    _, photos = indexed
    target = photos / "img01.png"
    status, body, _ = service.upload(target.read_bytes(), k="3")
    assert status == 200 and len(body["results"]) == 3
    best = body["results"][0]
    assert (best["rank"], best["path"]) == (1, str(target)) and best["score"] == pytest.approx(1.0, abs=1e-4)
    status, original, _ = service.get(f"/api/image/{best['id']}")
    assert status == 200 and original == target.read_bytes()
    status, thumb, kind = service.get(f"/api/thumb/{best['id']}")
    assert status == 200 and kind == "image/jpeg" and thumb[:2] == b"\xff\xd8"
    status, similar, _ = service.get(f"/api/similar/{best['id']}?k=4")
    assert status == 200 and len(similar["results"]) == 4 and str(target) not in [r["path"] for r in similar["results"]]
    status, inside, _ = service.upload(target.read_bytes(), k="5", under=str(photos / "sub"))
    assert status == 200 and len(inside["results"]) == 3
    status, info, _ = service.get("/api/info")
    assert status == 200 and info["count"] == 12 and info["roots"][0]["path"] == str(photos)
    status, health, _ = service.get("/api/health")
    assert health["ok"] and health["count"] == 12


@pytest.mark.parametrize("case", ["corrupt", "empty", "huge", "text", "no field", "bad k"])
def test_bad_uploads_get_a_clear_4xx_and_the_service_goes_on(service, case, indexed):
    _, photos = indexed
    if case == "no field":
        status, body, _ = service.request("/api/query", b"k=3", {"Content-Type": "application/x-www-form-urlencoded"})
    else:
        content = {
            "corrupt": (photos / "img01.png").read_bytes()[:300],
            "empty": b"",
            "huge": os.urandom(2 * 2**20),
            "text": b"hello",
            "bad k": (photos / "img01.png").read_bytes(),
        }[case]
        status, body, _ = service.upload(content, **({"k": "zero"} if case == "bad k" else {}))
    assert status == (413 if case == "huge" else 400) and body["error"]
    assert service.upload((photos / "img01.png").read_bytes())[0] == 200  # unharmed


@pytest.mark.parametrize(
    "path",
    [
        "/api/image/999999",
        "/api/image/..%2F..%2Fetc%2Fpasswd",
        "/api/image/%2Fetc%2Fpasswd",
        "/api/thumb/-1",
        "/api/image/1/../../../etc/passwd",
        "/etc/passwd",
    ],
)
def test_files_are_served_by_catalog_id_only(service, path):
    status, body, _ = service.request(path)
    assert status == 404 and b"root:" not in (body if isinstance(body, bytes) else json.dumps(body).encode())


def test_eight_concurrent_clients_get_answers_and_no_errors(service, indexed):
    _, photos = indexed
    images = sorted(p for p in photos.rglob("*.*"))
    failures: list = []

    def client(n: int) -> None:
        for i in range(4):
            status, body, _ = service.upload(images[(n + i) % len(images)].read_bytes(), k="5")
            if status != 200 or len(body["results"]) != 5:
                failures.append((status, body))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == []


def test_a_token_is_required_on_every_request_when_set(indexed):
    env, photos = indexed
    running = Service(env, "--token", "s3cret")
    try:
        running.wait_ready(headers={"Authorization": "Bearer s3cret"})
        assert running.request("/api/health")[0] == 401
        assert running.request("/api/health", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert running.request("/api/thumb/1")[0] == 401
        assert running.request("/api/health", headers={"Cookie": "edge_search_session=s3cret"})[0] == 401
        running.headers = {"Authorization": "Bearer s3cret"}
        assert running.upload((photos / "img01.png").read_bytes())[0] == 200
    finally:
        running.stop()


def test_another_address_without_a_token_is_refused_before_binding(indexed):
    env, _ = indexed
    result = run_script("edge-search", "serve", "--host", "0.0.0.0", "--port", str(free_port()), env=env, timeout=60)
    assert result.returncode == 2 and "--token" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_stops_the_service_cleanly(indexed):
    env, _ = indexed
    running = Service(env)
    running.wait_ready()
    assert running.stop() == 0


def test_no_index_yet_is_exit_6_before_anything_listens(tmp_path, tiny_bundle):
    result = run_script(
        "edge-search", "serve", "--port", str(free_port()), env=cli_env(tmp_path, tiny_bundle), timeout=60
    )
    assert result.returncode == 6 and "edge-search index" in result.stderr
