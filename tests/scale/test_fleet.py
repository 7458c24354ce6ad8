"""`edge-search sync --milvus URI` and `query --milvus URI`: a fleet-wide copy of boxes' indexes in Milvus,
against Milvus Lite (a *.db file) and a real Milvus server process started here and stopped by pid."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from cluster import free_port

from conftest import cli_env, console_script, photo

pymilvus = pytest.importorskip("pymilvus")

from edge_search.runtime.library import Library  # noqa: E402
from edge_search.runtime.store.catalog import Catalog  # noqa: E402

pytestmark = pytest.mark.scale  # tier: CONTRIBUTING.md "The test tiers"


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """A Milvus 2.3 standalone server (the PyPI `milvus` package) with its data in a temp dir."""
    milvus = pytest.importorskip("milvus")
    server = milvus.MilvusServer(milvus.MilvusServerConfig(proxy_port=free_port()))
    server.config.configs.update(data_dir=str(tmp_path_factory.mktemp("milvus")))
    server.config.resolve_storage()
    server.start()
    pid = server.server_proc.pid
    try:
        yield f"http://127.0.0.1:{server.listen_port}"
    finally:
        os.kill(pid, signal.SIGTERM)
        try:
            server.server_proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            server.server_proc.wait(timeout=30)
        server.server_proc = None


@pytest.fixture(params=["lite", "server"])
def uri(request, tmp_path) -> str:
    if request.param == "lite":
        return str(tmp_path / "fleet.db")
    return request.getfixturevalue("milvus_server")


def make_box(root: Path, seeds: range) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        photo(seed, 120 + seed % 40, 100 + seed % 30).save(root / f"s{seed}.jpg")
    return root


def remote_rows(uri: str, collection: str, box: str) -> dict[int, tuple]:
    client = pymilvus.MilvusClient(uri=uri)
    client.load_collection(collection)
    rows = client.query(
        collection,
        filter=f'box == "{box}"',
        limit=16384,
        output_fields=["file_id", "path", "size", "mtime_ns", "sha256", "embedding"],
    )
    client.close()
    return {
        int(r["file_id"]): (
            r["path"],
            int(r["size"]),
            int(r["mtime_ns"]),
            r["sha256"],
            np.asarray(r["embedding"], dtype=np.float32),
        )
        for r in rows
    }


def assert_collection_equals_catalog(uri: str, collection: str, box: str, index_dir: Path) -> None:
    remote = remote_rows(uri, collection, box)
    catalog = Catalog.open(index_dir, create=False)
    local = {key: (path, size, mtime, sha) for key, path, size, mtime, sha in catalog.ok_files()}
    assert set(remote) == set(local)
    for keys, vectors in catalog.vectors():
        for key, vector in zip(keys, vectors):
            assert remote[int(key)][:4] == local[int(key)]
            assert np.array_equal(remote[int(key)][4], vector)  # float32 both sides: the very same numbers
    catalog.close()


def test_a_sync_copies_the_index_and_a_second_sync_changes_nothing(uri, model, tmp_path):
    library = Library(tmp_path / "idx")
    library.index(model, [make_box(tmp_path / "photos", range(12))])
    first = library.sync_fleet(uri, box="alpha")
    assert (first.added, first.updated, first.deleted, first.count) == (12, 0, 0, 12)
    assert first.collection.startswith("edge_search_")
    assert_collection_equals_catalog(uri, first.collection, "alpha", tmp_path / "idx")
    second = library.sync_fleet(uri, box="alpha")
    assert (second.added, second.updated, second.deleted, second.unchanged) == (0, 0, 0, 12)


def test_a_sync_follows_new_changed_and_deleted_files_and_is_seen_at_once(uri, model, tmp_path):
    library = Library(tmp_path / "idx")
    photos = make_box(tmp_path / "photos", range(10))
    library.index(model, [photos])
    library.sync_fleet(uri, box="alpha")
    photo(77, 150, 110).save(photos / "new.jpg")
    photo(78, 150, 110).save(photos / "s3.jpg")  # other content under an existing name: a new catalog id
    (photos / "s5.jpg").unlink()
    os.utime(photos / "s7.jpg", ns=(1_800_000_000_000_000_000,) * 2)  # touched: same id, new mtime
    library.index(model, [photos])
    report = library.sync_fleet(uri, box="alpha")
    assert (report.added, report.updated, report.deleted, report.count) == (2, 1, 2, 10)
    assert_collection_equals_catalog(uri, report.collection, "alpha", tmp_path / "idx")
    # strong consistency: the new photo is found by a query issued right after the sync
    found = library.query_fleet(uri, model, images=[photos / "new.jpg"], k=3)
    assert (found.hits[0].box, found.hits[0].path) == ("alpha", str(photos / "new.jpg"))
    assert found.hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_a_fleet_query_answers_across_boxes_like_a_search_of_their_union(uri, model, tiny_bundle, tmp_path):
    boxes = {"alpha": range(0, 15), "beta": range(100, 115)}
    vectors, labels = [], []
    for name, seeds in boxes.items():
        library = Library(tmp_path / name)
        library.index(model, [make_box(tmp_path / f"photos-{name}", seeds)])
        library.sync_fleet(uri, box=name)
        catalog = Catalog.open(tmp_path / name, create=False)
        paths = dict((key, path) for key, path, *_ in catalog.ok_files())
        for keys, block in catalog.vectors():
            vectors.extend(block)
            labels.extend((name, paths[int(key)]) for key in keys)
        catalog.close()
    query_image = tmp_path / "photos-beta" / "s104.jpg"
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_PRECISION="fp32")
    answered = subprocess.run(
        [
            console_script("edge-search"),
            "query",
            str(query_image),
            "--milvus",
            uri,
            "-k",
            "8",
            "--json",
            "--index",
            str(tmp_path / "alpha"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert answered.returncode == 0, answered.stderr
    hits = json.loads(answered.stdout)["results"]
    expected = np.argsort(-(np.stack(vectors) @ model.embed_image(query_image)), kind="stable")[:8]
    assert [(h["box"], h["path"]) for h in hits] == [labels[i] for i in expected]
    assert {h["box"] for h in hits} == {"alpha", "beta"}
    only_alpha = Library(tmp_path / "alpha").query_fleet(uri, model, images=[query_image], k=5, box="alpha")
    assert len(only_alpha.hits) == 5 and {h.box for h in only_alpha.hits} == {"alpha"}


def test_a_collection_built_with_another_bundle_is_refused(uri, model, tiny_clip_bundle, tmp_path):
    Library(tmp_path / "vit").index(model, [make_box(tmp_path / "photos", range(4))])
    Library(tmp_path / "vit").sync_fleet(uri, box="alpha", collection="shared")
    env = cli_env(tmp_path, tiny_clip_bundle)
    assert (
        subprocess.run(
            [console_script("edge-search"), "index", str(tmp_path / "photos"), "--index", str(tmp_path / "clip")],
            env=env,
            capture_output=True,
            timeout=300,
        ).returncode
        == 0
    )
    refused = subprocess.run(
        [
            console_script("edge-search"),
            "sync",
            "--milvus",
            uri,
            "--collection",
            "shared",
            "--box",
            "beta",
            "--index",
            str(tmp_path / "clip"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 7, refused.stderr
    assert "holds embeddings of another bundle" in refused.stderr and "Traceback" not in refused.stderr
    assert remote_rows(uri, "shared", "beta") == {} and len(remote_rows(uri, "shared", "alpha")) == 4


def test_usage_and_unreachable_servers_are_one_paragraph(tiny_bundle, tmp_path, model):
    Library(tmp_path / "idx").index(model, [make_box(tmp_path / "photos", range(3))])
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_INDEX=str(tmp_path / "idx"))
    script = console_script("edge-search")
    no_uri = subprocess.run([script, "sync"], env=env, capture_output=True, text=True, timeout=120)
    assert no_uri.returncode == 2 and "--milvus" in no_uri.stderr
    bad_box = subprocess.run(
        [script, "sync", "--milvus", str(tmp_path / "f.db"), "--box", "a b"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad_box.returncode == 2 and "box name" in bad_box.stderr
    down = subprocess.run(
        [script, "sync", "--milvus", f"http://127.0.0.1:{free_port()}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 11 and "Cannot reach Milvus" in down.stderr and "Traceback" not in down.stderr
    box_alone = subprocess.run(
        [script, "query", str(tmp_path / "photos" / "s0.jpg"), "--box", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert box_alone.returncode == 2 and "--milvus" in box_alone.stderr


def test_a_collection_left_without_its_index_by_a_killed_sync_is_repaired_by_the_next(uri, model, tmp_path):
    """pymilvus creates a collection, then its index: a sync killed in between left one that no load accepts."""
    library = Library(tmp_path / "idx")
    library.index(model, [make_box(tmp_path / "photos", range(4))])
    name = library.sync_fleet(uri, box="alpha").collection
    client = pymilvus.MilvusClient(uri=uri)
    client.release_collection(name)
    client.drop_index(name, "embedding")
    client.close()
    again = library.sync_fleet(uri, box="alpha")
    assert (again.added, again.unchanged) == (0, 4)
    assert_collection_equals_catalog(uri, name, "alpha", tmp_path / "idx")


def test_a_sync_killed_half_way_is_finished_by_the_next(milvus_server, tiny_bundle, tmp_path):
    """20 000 catalog rows, the sync process kill -9'd once some (not all) rows reached the server."""
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.store.generations import IndexWriter

    count, dim = 20_000, Bundle.load(tiny_bundle).manifest.embedding_dim
    vectors = np.random.default_rng(7).normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with IndexWriter(tmp_path / "idx", Bundle.load(tiny_bundle), precision="fp32") as writer:
        writer.commit_results(
            (
                f"/photos/{i:06d}.jpg".encode(),
                1000 + i,
                1_700_000_000_000_000_000 + i,
                hashlib.sha256(str(i).encode()).hexdigest(),
                vectors[i],
                None,
                None,
            )
            for i in range(count)
        )
        writer.publish()
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_INDEX=str(tmp_path / "idx"))
    command = [
        console_script("edge-search"),
        "sync",
        "--milvus",
        milvus_server,
        "--box",
        "big",
        "--collection",
        "resume",
        "--json",
    ]
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = pymilvus.MilvusClient(uri=milvus_server)
    synced = 0
    while run.poll() is None and synced == 0:
        time.sleep(0.1)
        if client.has_collection("resume"):
            try:
                client.load_collection("resume")
                synced = client.query("resume", filter='box == "big"', output_fields=["count(*)"])[0]["count(*)"]
            except pymilvus.exceptions.MilvusException:
                continue  # created a moment ago: its index is not there yet
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    assert 0 < synced < count, f"the kill came too late ({synced} rows synced)"
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    assert report["added"] == count - report["unchanged"] and report["unchanged"] >= synced and report["count"] == count
    assert client.query("resume", filter='box == "big"', output_fields=["count(*)"])[0]["count(*)"] == count
    again = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, timeout=600).stdout)
    assert (again["added"], again["updated"], again["deleted"], again["unchanged"]) == (0, 0, 0, count)
    client.close()


def test_the_service_answers_fleet_queries_and_its_own_index_as_before(milvus_server, tiny_bundle, tmp_path):
    from served import Service

    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_INDEX=str(tmp_path / "here"))
    script = console_script("edge-search")
    for name, seeds in (("here", range(0, 6)), ("there", range(200, 206))):
        box_env = {**env, "EDGE_SEARCH_INDEX": str(tmp_path / name)}
        assert (
            subprocess.run(
                [script, "index", str(make_box(tmp_path / f"photos-{name}", seeds))],
                env=box_env,
                capture_output=True,
                timeout=300,
            ).returncode
            == 0
        )
        assert (
            subprocess.run(
                [script, "sync", "--milvus", milvus_server, "--box", name, "--collection", "served"],
                env=box_env,
                capture_output=True,
                timeout=300,
            ).returncode
            == 0
        )
    running = Service(env, "--no-watch", "--milvus", milvus_server, "--collection", "served")
    try:
        running.wait_ready()
        image = (tmp_path / "photos-there" / "s203.jpg").read_bytes()
        status, fleet, _ = running.upload(image, k="4", scope="fleet")
        assert status == 200 and fleet["collection"] == "served"
        assert (fleet["results"][0]["box"], fleet["results"][0]["path"]) == (
            "there",
            str(tmp_path / "photos-there" / "s203.jpg"),
        )
        status, one_box, _ = running.upload(image, k="3", scope="fleet", box="here")
        assert status == 200 and {r["box"] for r in one_box["results"]} == {"here"}
        status, local, _ = running.upload(image, k="3")  # scope=box (the default): this box's own index
        assert status == 200 and all(r["path"].startswith(str(tmp_path / "photos-here")) for r in local["results"])
        status, refused, _ = running.upload(image, scope="everywhere")
        assert status == 400 and "scope" in refused["error"]
    finally:
        running.stop()
