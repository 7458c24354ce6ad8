"""Faults: kill -9 at random moments, a full disk, damaged files, concurrent use, and `verify`."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_env, edge_search, jpeg_with_comment, photo

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"

EDGE = [sys.executable, "-m", "edge_search.runtime"]


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for i in range(160):
        photo(3000 + i, 96, 72).save(root / f"{i:03d}.jpg")
    return root


@pytest.fixture(scope="module")
def slow_to_index(tmp_path_factory) -> Path:
    """400 camera-sized JPEGs (8 distinct pictures, each file's bytes made distinct by a JPEG comment, since
    identical files are embedded once): long enough to query while it indexes."""
    root = tmp_path_factory.mktemp("large")
    originals = []
    for i in range(8):
        originals.append(root / f"orig{i}.jpg")
        photo(5000 + i, 1600, 1200).save(originals[-1], quality=90)
    for i in range(392):
        (root / f"copy{i:03d}.jpg").write_bytes(jpeg_with_comment(originals[i % 8].read_bytes(), f"copy {i}"))
    return root


def catalog_rows(index: Path) -> tuple[int, int]:
    """(rows, distinct paths) embedded; (0, 0) for a catalog whose creation was killed before its tables."""
    with sqlite3.connect(index / "catalog.sqlite") as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name='files'").fetchone():
            return 0, 0
        return db.execute("SELECT count(*), count(DISTINCT path) FROM files WHERE status='ok'").fetchone()


def test_kill_9_at_ten_random_moments_never_corrupts_the_index(many_photos, tiny_bundle, tmp_path):
    # publish after every commit, one image per batch: kills land in embedding, commits and publishes
    env = cli_env(
        tmp_path, tiny_bundle, EDGE_SEARCH_PUBLISH_EVERY="0", EDGE_SEARCH_BATCH_SIZE="1", EDGE_SEARCH_THREADS="1"
    )
    index = tmp_path / "index"
    started = time.perf_counter()
    full = edge_search("index", str(many_photos), env=env)
    assert full.returncode == 0, full.stderr
    duration = time.perf_counter() - started
    rng = random.Random(20261125)
    for attempt in range(10):
        if attempt % 3 == 0:
            shutil.rmtree(index, ignore_errors=True)  # some runs start from scratch, others resume
        for p in list(many_photos.glob("*.jpg"))[: attempt * 3]:
            os.utime(p, ns=(time.time_ns(), time.time_ns()))  # and some files changed since
        proc = subprocess.Popen(
            EDGE + ["index", str(many_photos)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.1, max(duration, 0.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (index / "catalog.sqlite").exists():
            assert catalog_rows(index)[0] == catalog_rows(index)[1]  # no duplicates, whatever the moment
        after = edge_search("query", str(many_photos / "007.jpg"), "--json", env=env)
        assert after.returncode in (0, 6), after.stderr  # works, or plainly "no index yet" if killed before any commit
        assert "Traceback" not in after.stderr
    rerun = edge_search("index", str(many_photos), "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    info = json.loads(edge_search("info", "--json", env=env).stdout)
    assert info["count"] == info["index_count"] == 160 and catalog_rows(index) == (160, 160)
    assert [p.name for p in index.iterdir() if p.name.endswith(".tmp")] == []
    assert len(list(index.glob("index.*.usearch"))) == 1
    verify = edge_search("verify", "--json", env=env)
    assert verify.returncode == 0 and all(c["ok"] for c in json.loads(verify.stdout)["checks"])


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write(), as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_while_committing_keeps_the_previous_generation(many_photos, photo_dir, tiny_bundle, tmp_path):
    env = cli_env(tmp_path, tiny_bundle)
    assert edge_search("index", str(photo_dir), env=env).returncode == 0
    before = json.loads(edge_search("info", "--json", env=env).stdout)
    size = (tmp_path / "index" / "catalog.sqlite").stat().st_size
    full = subprocess.run(
        EDGE + ["index", str(photo_dir), str(many_photos)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(size + 4096),
    )
    assert full.returncode == 10, full.stderr
    assert "Traceback" not in full.stderr and "Cannot" in full.stderr
    served = json.loads(edge_search("query", str(photo_dir / "img01.png"), "--json", env=env).stdout)
    assert served["results"][0]["path"] == str(photo_dir / "img01.png")
    assert json.loads(edge_search("info", "--json", env=env).stdout)["generation"] == before["generation"]
    later = edge_search("index", str(photo_dir), str(many_photos), "--json", env=env)
    assert later.returncode == 0 and json.loads(later.stdout)["count"] == 172


def test_a_full_disk_while_publishing_keeps_the_previous_generation(photo_dir, tiny_bundle, tmp_path, monkeypatch):
    from edge_search.runtime.errors import StorageError
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.store import vector_index as vi
    from edge_search.runtime.store.generations import IndexWriter

    env = cli_env(tmp_path, tiny_bundle)
    assert edge_search("index", str(photo_dir), env=env).returncode == 0
    (photo_dir / "img03.bmp").unlink()

    def no_space(self, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(vi.Index, "save", no_space)
    with pytest.raises(StorageError, match="previous generation is still served"):
        with IndexWriter(tmp_path / "index", Bundle.load(tiny_bundle), precision="int8") as writer:
            writer.delete_paths([os.fsencode(str(photo_dir / "img03.bmp"))])
            writer.publish()
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "index").iterdir() if p.name.endswith(".tmp")] == []
    hit = json.loads(edge_search("query", str(photo_dir / "img05.tiff"), "--json", env=env).stdout)
    assert hit["results"][0]["path"] == str(photo_dir / "img05.tiff")
    assert edge_search("index", str(photo_dir), env=env).returncode == 0


@pytest.mark.parametrize("damage", ["truncated", "bitflip", "zero", "foreign"])
def test_a_damaged_index_file_is_detected_and_rebuilt_through_the_cli(damage, photo_dir, tiny_bundle, tmp_path):
    env = cli_env(tmp_path, tiny_bundle)
    edge_search("index", str(photo_dir), env=env)
    (file,) = (tmp_path / "index").glob("index.*.usearch")
    data = file.read_bytes()
    file.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "bitflip": data[:-7] + bytes([data[-7] ^ 1]) + data[-6:],
            "zero": b"",
            "foreign": photo(1).tobytes()[: len(data)],
        }[damage]
    )
    bad = edge_search("verify", "--json", env=env)
    assert not json.loads(bad.stdout)["ok"]
    result = edge_search("query", str(photo_dir / "img07.png"), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["path"] == str(photo_dir / "img07.png")
    assert "Rebuilt the index from the catalog" in result.stderr


def test_a_tampered_model_is_refused_before_onnxruntime_loads_it(photo_dir, tiny_bundle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    env = cli_env(tmp_path, bundle)
    model = bundle / "model.int8.onnx"
    data = bytearray(model.read_bytes())
    data[-50] ^= 0xFF
    model.write_bytes(bytes(data))
    altered = edge_search("embed", str(photo_dir / "img01.png"), env=env)
    assert altered.returncode == 3 and "does not match its manifest" in altered.stderr
    model.write_bytes(bytes(data[:1000]))
    truncated = edge_search("embed", str(photo_dir / "img01.png"), env=env)
    assert truncated.returncode == 3 and "truncated" in truncated.stderr


def test_queries_during_a_long_indexing_run_never_fail(slow_to_index, photo_dir, tiny_bundle, tmp_path):
    env = cli_env(
        tmp_path, tiny_bundle, EDGE_SEARCH_PUBLISH_EVERY="0", EDGE_SEARCH_BATCH_SIZE="1", EDGE_SEARCH_THREADS="1"
    )
    assert edge_search("index", str(photo_dir), env=env).returncode == 0
    indexer = subprocess.Popen(
        EDGE + ["index", str(photo_dir), str(slow_to_index)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    holder = tmp_path / "index" / "writer.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (holder.exists() and f'"pid": {indexer.pid}' in holder.read_text()):
        time.sleep(0.05)
    second = edge_search("index", str(photo_dir), env=env)
    assert second.returncode == 9 and f"pid {indexer.pid}" in second.stderr
    queries = failures = 0
    while indexer.poll() is None and queries < 60:
        result = edge_search("query", str(photo_dir / "img02.webp"), "--json", "-k", "1", env=env)
        queries += 1
        if result.returncode != 0 or json.loads(result.stdout)["results"][0]["path"] != str(photo_dir / "img02.webp"):
            failures += 1
    indexer.wait(timeout=300)
    assert queries >= 3 and failures == 0


@pytest.fixture
def read_only_view(tmp_path):
    """A read-only bind mount of a directory (needs root and mount rights, as on this project's machines)."""
    mounts = []

    def make(source: Path) -> Path:
        target = tmp_path / f"{source.name}-ro"
        target.mkdir()
        for command in (["mount", "--bind", str(source), str(target)], ["mount", "-o", "remount,ro,bind", str(target)]):
            if subprocess.run(command, capture_output=True).returncode != 0:
                pytest.skip("cannot make a read-only bind mount here (needs root)")
            mounts.append(target) if command[1] == "--bind" else None
        return target

    yield make
    for target in reversed(mounts):
        subprocess.run(["umount", str(target)], capture_output=True)


def test_a_read_only_index_directory_is_refused_by_the_indexer_but_queries_work(
    photo_dir, tiny_bundle, tmp_path, read_only_view
):
    env = cli_env(tmp_path, tiny_bundle)
    assert edge_search("index", str(photo_dir), env=env).returncode == 0
    read_only = dict(env, EDGE_SEARCH_INDEX=str(read_only_view(tmp_path / "index")))
    refused = edge_search("index", str(photo_dir), env=read_only)
    assert refused.returncode == 10 and "not writable" in refused.stderr and "Traceback" not in refused.stderr
    served = edge_search("query", str(photo_dir / "sub" / "img04.gif"), "--json", env=read_only)
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["results"][0]["path"] == str(photo_dir / "sub" / "img04.gif")
    assert json.loads(edge_search("info", "--json", env=read_only).stdout)["count"] == 12


@pytest.mark.parametrize("stage", ["empty file", "meta table only"])
def test_a_catalog_killed_while_being_created_reads_as_no_index_yet_and_the_next_run_builds_it(
    stage, tiny_bundle, photo_dir, tmp_path
):
    env = cli_env(tmp_path, tiny_bundle)
    index = tmp_path / "index"
    index.mkdir()
    with sqlite3.connect(index / "catalog.sqlite") as db:  # what a kill -9 leaves at these two moments
        db.execute("PRAGMA journal_mode=WAL")
        if stage == "meta table only":
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    query = edge_search("query", str(photo_dir / "img01.png"), env=env)
    assert query.returncode == 6 and "never completed" in query.stderr and "Traceback" not in query.stderr
    assert edge_search("info", env=env).returncode == 6
    assert edge_search("index", str(photo_dir), env=env).returncode == 0
    assert json.loads(edge_search("info", "--json", env=env).stdout)["count"] == 12
