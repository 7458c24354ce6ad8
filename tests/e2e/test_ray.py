"""`edge-search index --ray ADDRESS` on a real local Ray cluster of two nodes (started here, stopped by pid):
the cluster embeds, the box commits, and the result is the one-box result."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cluster import LocalRayCluster

from conftest import cli_env, console_script, photo

pytestmark = pytest.mark.scale  # tier: CONTRIBUTING.md "The test tiers"

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster() as running:
        yield running


@pytest.fixture
def folder(tmp_path) -> Path:
    """Forty distinct photos in two folders, and one file that is not an image."""
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    for i in range(40):
        photo(500 + i, 140 + 3 * i, 110 + 2 * i).save(
            root / ("trip" if i % 3 == 0 else "") / f"p{i:02d}.{'jpg' if i % 2 else 'png'}"
        )
    (root / "notes.jpg").write_bytes(b"this is not an image")
    return root


def index(folder: Path, env: dict, index_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script("edge-search"), "index", str(folder), "--index", str(index_dir), "--json", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def neighbours(index_dir: Path, env: dict, k: int = 5) -> dict[str, list[str]]:
    """Each indexed file's k nearest files, by the index's own query ("more like this")."""
    catalog = sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True)
    rows = catalog.execute("SELECT id, path, embedding FROM files WHERE status='ok'").fetchall()
    catalog.close()
    paths = [os.fsdecode(path) for _, path, _ in rows]
    vectors = np.stack([np.frombuffer(blob, dtype=np.float32) for _, _, blob in rows])
    scores = vectors @ vectors.T
    return {paths[i]: [paths[j] for j in np.argsort(-scores[i], kind="stable")[:k]] for i in range(len(paths))}


def stored(index_dir: Path) -> dict[str, np.ndarray]:
    catalog = sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True)
    rows = catalog.execute("SELECT path, embedding FROM files WHERE status='ok'").fetchall()
    catalog.close()
    return {os.fsdecode(path): np.frombuffer(blob, dtype=np.float32) for path, blob in rows}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_cluster_run_equals_a_one_box_run_and_a_bad_file_fails_alone(
    cluster, folder, tiny_bundle, tmp_path, precision
):
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_PRECISION=precision)
    on_box = index(folder, env, tmp_path / "box")
    on_cluster = index(folder, env, tmp_path / "cluster", "--ray", cluster.address)
    assert on_box.returncode == on_cluster.returncode == 4, on_cluster.stderr  # 4: some images could not be read
    report = json.loads(on_cluster.stdout)
    assert report["added"] == 40 and report["count"] == 40
    assert [f["path"] for f in report["failed"]] == [str(folder / "notes.jpg")]
    assert "2 Ray worker(s)" in report["cluster"] and "on 2 node(s)" in report["cluster"]
    box, spread = stored(tmp_path / "box"), stored(tmp_path / "cluster")
    assert box.keys() == spread.keys()
    assert min(float(box[p] @ spread[p]) for p in box) >= 0.99999
    assert neighbours(tmp_path / "cluster", env) == neighbours(tmp_path / "box", env)


def test_shipping_bytes_gives_the_same_embeddings(cluster, folder, tiny_bundle, tmp_path):
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_PRECISION="fp32")
    assert index(folder, env, tmp_path / "box").returncode == 4
    shipped = index(folder, env, tmp_path / "shipped", "--ray", cluster.address, "--ray-ship-bytes")
    assert shipped.returncode == 4, shipped.stderr
    box, spread = stored(tmp_path / "box"), stored(tmp_path / "shipped")
    assert box.keys() == spread.keys() and min(float(box[p] @ spread[p]) for p in box) >= 0.99999


def test_a_rerun_on_the_cluster_embeds_nothing_and_moved_files_keep_their_embeddings(
    cluster, folder, tiny_bundle, tmp_path
):
    env = cli_env(tmp_path, tiny_bundle)
    assert index(folder, env, tmp_path / "idx", "--ray", cluster.address).returncode == 4
    (folder / "trip").rename(folder / "holiday")
    again = index(folder, env, tmp_path / "idx", "--ray", cluster.address)
    report = json.loads(again.stdout)
    assert report["embedded"] == 0 and report["moved"] == 14 and report["count"] == 40


def test_a_worker_larger_than_any_node_fails_at_once_saying_so(cluster, folder, tiny_bundle, tmp_path):
    env = cli_env(tmp_path, tiny_bundle)
    started = time.monotonic()
    refused = index(folder, env, tmp_path / "idx", "--ray", cluster.address, "--ray-cpus-per-worker", "8")
    assert refused.returncode == 11
    assert "has 8 CPU(s) for a worker (the largest has 1)" in refused.stderr and "Traceback" not in refused.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "idx").exists()  # nothing was created for a run that could not start


def test_a_cluster_kept_busy_by_another_job_times_out_with_a_clear_error(cluster, folder, tiny_bundle, tmp_path):
    hog = (
        "import ray, sys, time\n"
        "ray.init(address=sys.argv[1], logging_level='ERROR')\n"
        "@ray.remote(num_cpus=1)\nclass Busy:\n    def ready(self): return 1\n"
        "actors = [Busy.remote() for _ in range(2)]\nray.get([a.ready.remote() for a in actors])\n"
        "print('holding', flush=True)\ntime.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hog, cluster.address], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        env = cli_env(tmp_path, tiny_bundle)
        started = time.monotonic()
        refused = index(folder, env, tmp_path / "idx", "--ray", cluster.address, "--ray-timeout", "3")
        assert refused.returncode == 11, refused.stderr
        assert "had no room for a worker of 1 CPU(s) for 3 s" in refused.stderr and "Traceback" not in refused.stderr
        assert time.monotonic() - started < 60
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_an_address_where_nothing_listens_is_one_paragraph_and_exit_11(folder, tiny_bundle, tmp_path):
    env = cli_env(tmp_path, tiny_bundle)
    refused = index(folder, env, tmp_path / "idx", "--ray", "127.0.0.1:1")
    assert refused.returncode == 11
    assert "Cannot join the Ray cluster at 127.0.0.1:1" in refused.stderr and "Traceback" not in refused.stderr


def many_large_photos(folder: Path, count: int = 300) -> Path:
    """`count` distinct camera-size PNGs (each is embedded), cheap to make: six pictures with different tails."""
    folder.mkdir()
    bases = []
    for i in range(6):
        photo(900 + i, 1600, 1200).save(folder / f"base{i}.png")
        bases.append((folder / f"base{i}.png").read_bytes())
    for j in range(count - 6):
        (folder / f"copy{j:03d}.png").write_bytes(bases[j % 6] + j.to_bytes(4, "big"))
    return folder


def start_and_wait_for_a_commit(folder: Path, index_dir: Path, env: dict, address: str) -> subprocess.Popen:
    run = subprocess.Popen(
        [console_script("edge-search"), "index", str(folder), "--index", str(index_dir), "--json", "--ray", address],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed = 0
    while run.poll() is None and committed == 0:
        try:
            with sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True) as db:
                committed = db.execute("SELECT count(*) FROM files").fetchone()[0]
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before the kill"
    return run


def test_a_box_killed_mid_run_keeps_what_it_committed_and_a_rerun_finishes(cluster, tiny_bundle, tmp_path):
    folder = many_large_photos(tmp_path / "many")
    env = cli_env(tmp_path, tiny_bundle)
    run = start_and_wait_for_a_commit(folder, tmp_path / "idx", env, cluster.address)
    run.kill()  # kill -9 of the box process: its Ray workers go with it (they belong to its job)
    run.wait(timeout=60)
    with sqlite3.connect(tmp_path / "idx" / "catalog.sqlite") as db:
        kept = db.execute("SELECT count(*) FROM files").fetchone()[0]
    assert 0 < kept < 300
    rerun = index(folder, env, tmp_path / "idx", "--ray", cluster.address)  # the cluster has room again
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["unchanged"] == kept and report["added"] == 300 - kept and report["count"] == 300


def test_killing_a_worker_node_mid_run_still_completes(tiny_bundle, tmp_path):
    """300 camera-size PNGs; the second node is kill -9'd once the first commit lands; its batches are redone."""
    folder = many_large_photos(tmp_path / "many")
    env = cli_env(tmp_path, tiny_bundle)
    with LocalRayCluster() as own:
        run = start_and_wait_for_a_commit(folder, tmp_path / "idx", env, own.address)
        own.worker.kill()
        out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    report = json.loads(out)
    assert report["count"] == 300 and report["added"] == 300 and not report["failed"]
    assert "lost and replaced" in report["cluster"]
    with sqlite3.connect(tmp_path / "idx" / "catalog.sqlite") as db:
        assert db.execute("SELECT count(DISTINCT path), count(*) FROM files WHERE status='ok'").fetchone() == (300, 300)
