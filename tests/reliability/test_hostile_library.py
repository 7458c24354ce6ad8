"""A hostile photo folder, through the installed CLI and the real service: links out of the folder, a FIFO,
/dev/zero, a device file, names that are not UTF-8 or reverse themselves, an image that lies about its size.
Nothing hangs, nothing outside the library is ever served, every API answer encodes every name."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from served import Service
from tests_support_images import lying_jpeg

from conftest import cli_env, console_script, photo, run_script

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"

LATIN1 = os.fsdecode(b"copy\xe9.jpg")  # a name that is not UTF-8 (surrogate-escaped)
RLO = "photo\u202egpj.png"


@pytest.fixture
def hostile(tmp_path, photo_dir):
    """photo_dir (12 photos) plus every hostile thing, and a secret outside it that must never be served."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.png"
    secret.write_bytes(b"TOP SECRET, not a photo" * 10)
    photo(7).save(outside / "elsewhere.jpg")  # a real photo, but outside the indexed folder
    lib = photo_dir
    (lib / "secret.png").symlink_to(secret)
    (lib / "passwd.jpg").symlink_to("/etc/passwd")
    (lib / "outside-photo.jpg").symlink_to(outside / "elsewhere.jpg")
    (lib / "outside-folder").symlink_to(outside)
    (lib / "alias.png").symlink_to(lib / "img01.png")  # a link that stays inside: indexed
    os.mkfifo(lib / "pipe.jpg")
    (lib / "zero.jpg").symlink_to("/dev/zero")
    (lib / "null.png").symlink_to("/dev/null")
    (lib / "bomb.jpg").write_bytes(lying_jpeg())
    shutil.copyfile(lib / "img06.jpg", os.fsencode(lib) + b"/copy\xe9.jpg")
    shutil.copyfile(lib / "img05.tiff", lib / RLO)
    return lib, secret


def index_json(lib, env, *extra):
    done = run_script("edge-search", "index", str(lib), "--json", *extra, env=env, timeout=120)
    return done, json.loads(done.stdout)


def test_indexing_a_hostile_folder_finishes_and_says_what_it_skipped(tmp_path, tiny_bundle, hostile):
    lib, _ = hostile
    env = cli_env(tmp_path, tiny_bundle)
    done, report = index_json(lib, env)
    assert done.returncode in (0, 4), done.stderr  # 4: some files failed (the lying JPEG)
    problems = {os.path.basename(p["path"]): p["reason"] for p in report["problems"]}
    failed = {os.path.basename(p["path"]): p["reason"] for p in report["failed"]}
    assert "named pipe" in problems["pipe.jpg"]
    for name in ("secret.png", "passwd.jpg", "outside-photo.jpg", "outside-folder", "zero.jpg", "null.png"):
        assert "outside the indexed folders" in problems[name], name
    assert "truncated" in failed["bomb.jpg"]
    assert report["count"] == 12 + 3  # the photos, the inside link, the Latin-1 and the RLO copies

    again, second = index_json(lib, env)  # a rescan: the same answer, quickly, nothing read from /dev/zero
    assert again.returncode in (0, 4) and second["embedded"] == 0 and second["count"] == 15


def test_follow_links_indexes_a_photo_outside_but_never_a_file_that_is_not_one(tmp_path, tiny_bundle, hostile):
    lib, _ = hostile
    env = cli_env(tmp_path, tiny_bundle)
    done, report = index_json(lib, env, "--follow-links")
    indexed = run_script("edge-search", "query", str(lib / "img03.bmp"), "-k", "40", "--json", env=env)
    paths = {os.path.basename(hit["path"]) for hit in json.loads(indexed.stdout)["results"]}
    assert {"outside-photo.jpg", "elsewhere.jpg"} <= paths  # through the file link and the folder link
    failed = {os.path.basename(p["path"]) for p in report["failed"]}
    assert {"secret.png", "passwd.jpg"} <= failed  # followed, read, and refused as images: never served
    problems = {os.path.basename(p["path"]): p["reason"] for p in report["problems"]}
    assert "character device" in problems["zero.jpg"] and "character device" in problems["null.png"]
    assert "named pipe" in problems["pipe.jpg"]  # followed links never lead to a read of a device or a FIFO
    assert "secret.png" not in paths and "passwd.jpg" not in paths


def test_the_service_serves_only_indexed_photos_checked_again_when_asked(tmp_path, tiny_bundle, hostile):
    lib, secret = hostile
    env = cli_env(tmp_path, tiny_bundle)
    index_json(lib, env)
    service = Service(env, "--no-watch")
    try:
        service.wait_ready()
        forbidden = {secret.read_bytes(), open("/etc/passwd", "rb").read()}
        served = {}
        for key in range(1, 60):  # every id there is, failed rows included, and some beyond
            status, body, kind = service.request(f"/api/image/{key}")
            assert status in (200, 404), (key, status)
            if status == 200:
                assert body not in forbidden and kind.startswith("image/")
                served[key] = body
        assert len(served) == 15
        latest = service.get("/api/latest?k=100")[1]["results"]
        by_name = {os.path.basename(hit["path"]): hit["id"] for hit in latest}
        assert "copy\ufffd.jpg" in by_name and RLO in by_name  # displayable, with an id to fetch the file by

        # swapped for a link out after indexing: 404, never the target
        target = lib / "img03.bmp"
        key = by_name["img03.bmp"]
        target.unlink()
        target.symlink_to(secret)
        assert service.request(f"/api/image/{key}")[0] == 404
        assert service.request(f"/api/thumb/{key}")[0] == 404
        # rewritten in place (same name, other content): 404 until indexed again
        key = by_name["img02.webp"]
        (lib / "img02.webp").write_bytes(b"x" * 10)
        assert service.request(f"/api/image/{key}")[0] == 404
        # a FIFO swapped in where a photo was: 404 at once, no hang
        key = by_name["img07.png"]
        (lib / "img07.png").unlink()
        os.mkfifo(lib / "img07.png")
        assert service.request(f"/api/image/{key}")[0] == 404
    finally:
        service.stop()


def test_names_that_are_not_utf8_never_break_an_api_answer(tmp_path, tiny_bundle, hostile):
    lib, _ = hostile
    env = cli_env(tmp_path, tiny_bundle)
    index_json(lib, env)
    service = Service(env, "--no-watch")
    try:
        service.wait_ready()
        latin = lib / "img06.jpg"  # the Latin-1 copy has the same content: it is in every answer below
        status, found, _ = service.upload(latin.read_bytes(), k="30")
        assert status == 200 and "copy\ufffd.jpg" in [os.path.basename(h["path"]) for h in found["results"]]
        key = found["results"][0]["id"]
        for path in (f"/api/similar/{key}?k=30", "/api/latest?k=50", "/api/dupes", "/api/info"):
            status, body, _ = service.get(path)
            assert status == 200, (path, body)
        dupes = service.get("/api/dupes")[1]
        assert any("copy\ufffd.jpg" in os.path.basename(p) for g in dupes["groups"] for p in g["paths"])
    finally:
        service.stop()


def test_a_second_ctrl_c_ends_indexing_at_once_and_keeps_what_was_committed(tmp_path, tiny_bundle):
    lib = tmp_path / "many"
    lib.mkdir()
    for i in range(400):
        photo(i, 400, 300).save(lib / f"p{i:03d}.png")
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_THREADS="1")
    proc = subprocess.Popen(
        [console_script("edge-search"), "index", str(lib), "--publish-every", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        index = tmp_path / "index"
        while not list(index.glob("index.*.usearch")) and time.monotonic() < deadline:
            time.sleep(0.1)  # something committed and published
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 130
    said = proc.stderr.read()
    assert "stopped at once" in said or "Stopped early" in said  # the first stop may have finished in between
    info = run_script("edge-search", "info", "--json", env=env)
    assert info.returncode == 0 and json.loads(info.stdout)["count"] > 0
