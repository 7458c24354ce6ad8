"""`edge-search serve` keeps its library current: new photos become searchable, deleted ones disappear,
queries keep working while it indexes, and a kill -9 mid-indexing loses nothing committed."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from served import Service

from conftest import jpeg_with_comment, photo, run_script

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"


def top_path(service: Service, image: Path) -> str | None:
    status, body, _ = service.upload(image.read_bytes(), k="1")
    assert status == 200, body
    return body["results"][0]["path"] if body["results"] else None


def watcher_caught_up(service: Service, count: int):
    health = service.health()
    return health["count"] == count and not health["watch"]["indexing"] and health["watch"]["passes"] >= 1


def test_a_new_photo_becomes_searchable_and_a_deleted_one_disappears(indexed, tmp_path):
    env, photos = indexed
    outside = tmp_path / "outside.jpg"
    photo(4242, 200, 150).save(outside)
    service = Service({**env, "EDGE_SEARCH_RESCAN": "3600"}, "--max-upload-mb", "4")  # events, not the rescan
    try:
        service.wait_ready()
        service.wait_until(lambda: watcher_caught_up(service, 12), "the catch-up pass at start")
        assert service.health()["watch"]["mode"] == "events"
        assert top_path(service, outside) != str(photos / "new.jpg")

        added = time.monotonic()
        (photos / "new.jpg").write_bytes(outside.read_bytes())
        service.wait_until(lambda: top_path(service, outside) == str(photos / "new.jpg"), "the new photo to be found")
        print(f"new photo searchable after {time.monotonic() - added:.2f} s")

        doomed = photos / "img01.png"
        doomed_bytes = doomed.read_bytes()
        doomed.unlink()
        service.wait_until(lambda: watcher_caught_up(service, 12), "the deletion to be indexed")
        status, body, _ = service.upload(doomed_bytes, k="12")
        assert status == 200 and str(doomed) not in [hit["path"] for hit in body["results"]]
        assert service.get("/api/info")[1]["index_count"] == 12
    finally:
        assert service.stop() == 0


def test_a_shell_index_between_the_services_passes_runs_and_the_service_sees_it(indexed, tmp_path):
    """README: the service holds the writer lock only while a pass runs; between passes a shell `index` runs."""
    env, photos = indexed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    photo(5151, 200, 150).save(elsewhere / "other.jpg")
    service = Service({**env, "EDGE_SEARCH_RESCAN": "3600"})
    try:
        service.wait_ready()
        service.wait_until(lambda: watcher_caught_up(service, 12), "the catch-up pass at start")
        shell = run_script("edge-search", "index", str(elsewhere), env=env)
        assert shell.returncode == 0, shell.stderr
        service.wait_until(lambda: service.health()["count"] == 13, "the shell's commit to be seen")
        assert top_path(service, elsewhere / "other.jpg") == str(elsewhere / "other.jpg")
    finally:
        assert service.stop() == 0


def test_no_watch_is_a_read_only_replica(indexed):
    """It indexes nothing itself and never holds the writer lock: a shell `index` runs beside it, finds the new
    photo still to add (so the replica did not add it), and the replica then serves what the shell published."""
    env, photos = indexed
    service = Service(env, "--no-watch")
    try:
        service.wait_ready()
        photo(4343).save(photos / "later.jpg")
        shell = run_script("edge-search", "index", "--json", env=env)
        assert shell.returncode == 0, shell.stderr
        assert (json.loads(shell.stdout)["added"], json.loads(shell.stdout)["unchanged"]) == (1, 12)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and service.health()["count"] != 13:
            time.sleep(0.1)
        health = service.health()
        assert health["watch"] == {"mode": "off"} and health["count"] == 13
        assert top_path(service, photos / "later.jpg") == str(photos / "later.jpg")
    finally:
        assert service.stop() == 0


def test_eight_clients_query_while_the_watcher_indexes_new_files(indexed):
    env, photos = indexed
    service = Service(env)
    try:
        service.wait_ready()
        service.wait_until(lambda: watcher_caught_up(service, 12), "the catch-up pass at start")
        queries = sorted(p for p in photos.rglob("*.*"))
        failures: list = []
        answered = []

        def client(n: int) -> None:
            for i in range(6):
                status, body, _ = service.upload(queries[(n + i) % len(queries)].read_bytes(), k="5")
                if status != 200 or len(body["results"]) != 5:
                    failures.append((status, body))
                answered.append(status)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for i in range(40):
            photo(7000 + i, 640, 480).save(photos / f"burst{i:02d}.jpg")
        for thread in threads:
            thread.join(timeout=300)
        assert failures == [] and len(answered) == 48
        service.wait_until(lambda: watcher_caught_up(service, 52), "the 40 new photos to be indexed")
    finally:
        assert service.stop() == 0


def catalog_rows(index: Path) -> tuple[int, int]:
    with sqlite3.connect(index / "catalog.sqlite") as db:
        return db.execute("SELECT count(*), count(DISTINCT path) FROM files WHERE status='ok'").fetchone()


def test_kill_9_of_the_service_mid_indexing_loses_nothing_committed_and_a_restart_resumes(indexed, tmp_path):
    env, photos = indexed
    index = tmp_path / "index"
    service = Service(env)
    try:
        service.wait_ready()
        service.wait_until(lambda: watcher_caught_up(service, 12), "the catch-up pass at start")
        staging = tmp_path / "staging"
        staging.mkdir()
        originals = []
        for i in range(8):
            buffer = io.BytesIO()
            photo(9000 + i, 1600, 1200).save(buffer, "JPEG", quality=92)
            originals.append(buffer.getvalue())
        for i in range(240):  # 240 distinct files of 8 pictures
            (staging / f"camera{i:03d}.jpg").write_bytes(jpeg_with_comment(originals[i % 8], f"camera {i}"))
        for made in staging.iterdir():
            made.rename(photos / made.name)  # all at once, as a copy from a camera card would land
        service.wait_until(lambda: service.health()["count"] > 12, "a first commit of new photos", timeout=300)
        service.kill()
    finally:
        service.stop()
    committed, distinct = catalog_rows(index)
    assert committed == distinct and 12 < committed < 252

    restarted = Service(env)
    try:
        restarted.wait_ready()
        restarted.wait_until(lambda: watcher_caught_up(restarted, 252), "the restart to resume and finish", timeout=600)
        same_picture = {str(photos / f"camera{i:03d}.jpg") for i in range(123 % 8, 240, 8)}  # 123's 29 twins
        assert top_path(restarted, photos / "camera123.jpg") in same_picture
    finally:
        assert restarted.stop() == 0
    assert catalog_rows(index) == (252, 252)
    verify = run_script("edge-search", "verify", "--json", env=env)
    assert verify.returncode == 0 and all(c["ok"] for c in json.loads(verify.stdout)["checks"])
    info = json.loads(run_script("edge-search", "info", "--json", env=env).stdout)
    assert info["count"] == info["index_count"] == 252
