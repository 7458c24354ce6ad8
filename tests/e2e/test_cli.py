"""The real CLI in subprocesses: index, query, info, remove, montage, exit codes, kill -9 and resume."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from PIL import Image

from conftest import cli_env, edge_search, photo
from edge_search.runtime.library import STORED

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"


@pytest.fixture
def env(tmp_path, tiny_bundle):
    return cli_env(tmp_path, tiny_bundle)


def test_index_then_query_finds_the_image_itself_first(photo_dir, env, tmp_path):
    first = edge_search("index", str(photo_dir), "--json", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["added"], summary["count"], summary["failed"]) == (12, 12, [])
    target = photo_dir / "img05.tiff"
    hit = edge_search("query", str(target), "-k", "3", "--json", env=env)
    assert hit.returncode == 0, hit.stderr
    answer = json.loads(hit.stdout)
    assert answer["results"][0] == {
        "rank": 1,
        "score": pytest.approx(1.0, abs=1e-6),  # its stored embedding: exactly itself
        "path": str(target),
        "id": pytest.approx(answer["results"][0]["id"]),
        "taken": answer["results"][0]["taken"],  # no EXIF: its file's time (format checked below)
        "type": "photo",
    }
    assert isinstance(answer["results"][0]["id"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", answer["results"][0]["taken"])
    assert len(answer["results"]) == 3 and answer["provider"] == STORED and answer["latency_ms"] > 0
    second = json.loads(edge_search("index", str(photo_dir), "--json", env=env).stdout)
    assert (second["added"], second["updated"], second["unchanged"]) == (0, 0, 12)


def test_human_output_and_info(photo_dir, env):
    edge_search("index", str(photo_dir), env=env)
    text = edge_search("query", str(photo_dir / "img01.png"), "-k", "2", env=env)
    assert text.stdout.splitlines()[0].split() == ["1", text.stdout.split()[1], str(photo_dir / "img01.png")]
    info = json.loads(edge_search("info", "--json", env=env).stdout)
    assert info["count"] == 12 and info["dim"] == 48 and info["vector_dtype"] == "f16" and info["generation"] >= 1
    assert {"model", "precision", "size_bytes", "bundle_path", "last_indexed_at"} <= info.keys()


def test_montage_is_written_and_opens(photo_dir, env, tmp_path):
    edge_search("index", str(photo_dir), env=env)
    out = tmp_path / "montage.jpg"
    result = edge_search("query", str(photo_dir / "img02.webp"), "-k", "4", "--montage", str(out), env=env)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.format == "JPEG" and image.width > 4 * 256


def test_a_montage_of_names_no_installed_font_can_draw_says_which_package_adds_one(photo_dir, env, tmp_path):
    from edge_search.runtime.jobs.fonts import _installed_font_covers

    shutil.copyfile(photo_dir / "img02.webp", photo_dir / "東京タワー.webp")
    edge_search("index", str(photo_dir), env=env)
    result = edge_search(
        "query", str(photo_dir / "img02.webp"), "-k", "4", "--montage", str(tmp_path / "m.png"), env=env
    )
    assert result.returncode == 0, result.stderr
    if _installed_font_covers(frozenset("東京タワー")):  # a machine with CJK fonts draws them: nothing to say
        assert "fonts-noto-cjk" not in result.stderr
    else:
        assert result.stderr.count("fonts-noto-cjk") == 1 and all(c in result.stderr for c in "東京タワー")


def test_remove_and_min_score(photo_dir, env):
    edge_search("index", str(photo_dir), env=env)
    removed = json.loads(edge_search("remove", str(photo_dir / "sub"), "--json", env=env).stdout)
    assert removed["removed"] == 3
    results = json.loads(
        edge_search("query", str(photo_dir / "sub" / "img00.jpg"), "--json", "-k", "20", env=env).stdout
    )["results"]
    assert len(results) == 9 and all("/sub/" not in r["path"] for r in results)
    strict = json.loads(
        edge_search("query", str(photo_dir / "img01.png"), "--json", "--min-score", "0.9999", env=env).stdout
    )
    assert [r["path"] for r in strict["results"]] == [str(photo_dir / "img01.png")]


def test_expected_problems_end_in_a_message_and_a_documented_exit_code(photo_dir, env, tmp_path):
    missing = edge_search("query", str(photo_dir / "img01.png"), env=env)
    assert missing.returncode == 6 and "edge-search index" in missing.stderr and "Traceback" not in missing.stderr
    edge_search("index", str(photo_dir), env=env)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"garbage")
    bad_query = edge_search("query", str(broken), env=env)
    assert bad_query.returncode == 4 and "not an image" in bad_query.stderr and "Traceback" not in bad_query.stderr
    no_bundle = edge_search("query", str(photo_dir / "img01.png"), "--model", str(tmp_path / "nope"), env=env)
    assert no_bundle.returncode == 3 and "export-model" in no_bundle.stderr
    corrupt = dict(env, EDGE_SEARCH_INDEX=str(tmp_path / "corrupt"))
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    bad_catalog = edge_search("query", str(photo_dir / "img01.png"), env=corrupt)
    assert bad_catalog.returncode == 8 and "Traceback" not in bad_catalog.stderr


def test_some_failed_files_give_exit_4_and_their_reasons(photo_dir, env):
    (photo_dir / "zero.jpg").write_bytes(b"")
    result = edge_search("index", str(photo_dir), "--json", env=env)
    assert result.returncode == 4
    summary = json.loads(result.stdout)
    assert summary["added"] == 12 and summary["failed"] == [
        {"path": str(photo_dir / "zero.jpg"), "reason": "empty file"}
    ]


def test_kill_9_during_indexing_then_rerun_indexes_every_file_once(tiny_bundle, tmp_path):
    photos = tmp_path / "many"
    photos.mkdir()
    for i in range(240):
        photo(2000 + i, 96, 72).save(photos / f"{i:03d}.jpg")
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_BATCH_SIZE="1", EDGE_SEARCH_THREADS="1")
    catalog = tmp_path / "index" / "catalog.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_search.runtime", "index", str(photos)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if catalog.exists():
            with sqlite3.connect(catalog) as db:
                try:
                    if db.execute("SELECT count(*) FROM files").fetchone()[0] >= 32:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = edge_search("query", str(photos / "000.jpg"), env=env)
    assert after.returncode in (0, 6), after.stderr  # works, or plainly "no index yet": never "corrupt" (8)
    rerun = edge_search("index", str(photos), "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["count"] == 240
    info = json.loads(edge_search("info", "--json", env=env).stdout)
    with sqlite3.connect(catalog) as db:
        assert db.execute("SELECT count(DISTINCT path), count(*) FROM files").fetchone() == (240, 240)
    assert info["count"] == info["index_count"] == 240
    leftovers = [p.name for p in (tmp_path / "index").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [] and len(list((tmp_path / "index").glob("index.*.usearch"))) == 1
    hit = json.loads(edge_search("query", str(photos / "123.jpg"), "--json", "-k", "1", env=env).stdout)
    assert hit["results"][0]["path"] == str(photos / "123.jpg")
