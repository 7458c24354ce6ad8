"""One odd file never stops indexing, and the service serves only the file it indexed: a file dated after 2262
(beyond 64 bits of nanoseconds) or with an absurd EXIF date is indexed with its date unknown; a photo replaced by a
hard link to another file of the same size and time, or reached through a swapped folder, is not served."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image
from served import Service

from conftest import cli_env, photo, run_script
from edge_search.runtime.jobs.dates import DATE_TIME_ORIGINAL, EXIF_IFD

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers" (the installed scripts and a service)

YEAR_2300 = 10_413_792_000  # 2300-01-01 UTC, in seconds: 1.04e19 ns, beyond SQLite's 64-bit INTEGER


def save_with_exif_date(image: Image.Image, path: Path, date: str) -> None:
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = date
    image.save(path, exif=exif)


def set_mtime(path: Path, seconds: int) -> None:
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


@pytest.fixture
def odd_dates(tmp_path) -> Path:
    """Four photos: one ordinary, one dated 2300 by its file time, one with an impossible EXIF date (9999:99:99) and
    a 2300 file time, one with an absurd but valid EXIF date (9999-12-31) and an ordinary file time."""
    folder = tmp_path / "odd"
    folder.mkdir()
    photo(1).save(folder / "plain.jpg")
    photo(2).save(folder / "future-file.jpg")
    set_mtime(folder / "future-file.jpg", YEAR_2300)
    save_with_exif_date(photo(3), folder / "impossible-exif.jpg", "9999:99:99 99:99:99")
    set_mtime(folder / "impossible-exif.jpg", YEAR_2300)
    save_with_exif_date(photo(4), folder / "absurd-exif.jpg", "9999:12:31 23:59:59")
    set_mtime(folder / "absurd-exif.jpg", 1_500_000_000)  # 2017-07-14: the date it falls back on
    return folder


def test_a_file_dated_after_2262_and_absurd_exif_dates_are_indexed_with_the_date_unknown(
    odd_dates, tmp_path, tiny_bundle
):
    env = cli_env(tmp_path, tiny_bundle)
    first = run_script("edge-search", "index", str(odd_dates), env=env)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr and "4 files indexed" in first.stdout
    assert "2 file(s) have no plausible date" in first.stderr and "future-file.jpg" in first.stderr
    again = run_script("edge-search", "index", str(odd_dates), "--json", env=env)
    report = json.loads(again.stdout)
    assert (report["unchanged"], report["embedded"], report["undated"]) == (4, 0, [])  # noted once, not every run

    dated = run_script("edge-search", "query", str(odd_dates / "plain.jpg"), "--after", "1990", "--json", env=env)
    assert dated.returncode == 0, dated.stderr
    hits = {Path(hit["path"]).name: hit for hit in json.loads(dated.stdout)["results"]}
    assert set(hits) == {"plain.jpg", "absurd-exif.jpg"}  # an unknown date is in no range
    assert hits["absurd-exif.jpg"]["taken"].startswith("2017-07-14")
    everything = run_script("edge-search", "query", str(odd_dates / "plain.jpg"), "-k", "4", "--json", env=env)
    undated = {Path(hit["path"]).name: hit["taken"] for hit in json.loads(everything.stdout)["results"]}
    assert undated["future-file.jpg"] is None and undated["impossible-exif.jpg"] is None


def test_the_services_watcher_indexes_a_file_dated_2300_and_goes_on(indexed, tmp_path):
    env, photos = indexed
    service = Service({**env, "EDGE_SEARCH_RESCAN": "3600"})
    try:
        service.wait_ready()
        service.wait_until(lambda: service.health()["count"] == 12, "the catch-up pass")
        photo(77, 150, 110).save(photos / "from-the-future.jpg")
        set_mtime(photos / "from-the-future.jpg", YEAR_2300)
        photo(78, 150, 110).save(photos / "after-it.jpg")
        service.wait_until(lambda: service.health()["count"] == 14, "both new photos to be indexed")
        status, body, _ = service.upload((photos / "from-the-future.jpg").read_bytes(), k="1")
        assert status == 200 and body["results"][0]["path"] == str(photos / "from-the-future.jpg")
        assert body["results"][0]["taken"] is None
    finally:
        assert service.stop() == 0


@pytest.fixture
def served_library(tmp_path, tiny_bundle):
    """A library with a photo at its top and one in a sub-folder, indexed, and its service running (no watcher:
    what was indexed stays what the catalog says until the next index)."""
    library = tmp_path / "library"
    (library / "trip").mkdir(parents=True)
    (library / ".hidden").mkdir()
    photo(5).save(library / "top.jpg")
    photo(6).save(library / "trip" / "beach.jpg")
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(library), env=env).returncode == 0
    service = Service(env, "--no-watch")
    try:
        service.wait_ready()
        yield service, library
    finally:
        service.stop()


def image_id(service: Service, path: Path) -> int:
    status, body, _ = service.upload(path.read_bytes(), k="1")
    assert status == 200 and body["results"][0]["path"] == str(path), body
    return body["results"][0]["id"]


def test_a_photo_replaced_by_a_hard_link_to_another_file_of_the_same_size_and_time_is_not_served(
    served_library, tmp_path
):
    service, library = served_library
    indexed = library / "top.jpg"
    key = image_id(service, indexed)
    secret = tmp_path / "secret.txt"  # outside the library, the same size and time as the photo
    secret.write_bytes(b"x" * indexed.stat().st_size)
    os.utime(secret, ns=(indexed.stat().st_atime_ns, indexed.stat().st_mtime_ns))
    indexed.unlink()
    os.link(secret, indexed)
    assert (indexed.stat().st_size, indexed.stat().st_mtime_ns) == (secret.stat().st_size, secret.stat().st_mtime_ns)
    status, body, _ = service.get(f"/api/image/{key}")
    assert status == 404 and b"x" * 64 not in json.dumps(body).encode()
    assert "replaced" in body["error"]


def test_a_folder_swapped_for_a_link_to_a_hidden_folder_serves_nothing_that_was_not_indexed(served_library):
    service, library = served_library
    key = image_id(service, library / "trip" / "beach.jpg")
    hidden = library / ".hidden" / "beach.jpg"  # never indexed (hidden), the same name, size and time
    hidden.write_bytes((library / "trip" / "beach.jpg").read_bytes())
    os.utime(hidden, ns=(time.time_ns(), (library / "trip" / "beach.jpg").stat().st_mtime_ns))
    (library / "trip" / "beach.jpg").unlink()
    (library / "trip").rmdir()
    (library / "trip").symlink_to(library / ".hidden")
    assert (library / "trip" / "beach.jpg").read_bytes() == hidden.read_bytes()
    assert service.get(f"/api/image/{key}")[0] == 404
    assert service.get(f"/api/thumb/{key}")[0] == 404
