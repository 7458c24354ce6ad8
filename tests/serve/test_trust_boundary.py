"""The trust boundary in the fast tier: a damaged bundle is caught before it writes anything, an index goes only
where an index belongs, identical files are embedded once, a lying upload is refused before decoding, one
client cannot hold the worker, an older catalog migrates in place."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import onnx
import pytest
from old_catalogs import downgrade
from starlette.testclient import TestClient
from tests_support_images import lying_jpeg, lying_png

from conftest import cli_env, run_script
from edge_search.runtime.errors import BundleError, ImageDecodeError
from edge_search.runtime.files import VerifiedCache, sha256_file
from edge_search.runtime.library import Library, Model, RootRules
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.options import ModelOptions
from edge_search.runtime.serve.app import ServiceConfig, make_app
from edge_search.runtime.serve.config import HttpError
from edge_search.runtime.serve.service import Service
from edge_search.runtime.store.catalog import Catalog


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def edit_manifest(bundle, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_a_manifest_with_the_wrong_embedding_dim_is_refused_and_nothing_is_written(
    bundle_copy, tiny_bundle, tmp_path, photo_dir
):
    env = cli_env(tmp_path, bundle_copy)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    edit_manifest(bundle_copy, lambda m: m.update(embedding_dim=m["embedding_dim"] + 16))
    with pytest.raises(BundleError, match="dimensions"):
        Model.open(bundle_copy, ModelOptions(device="cpu", precision="fp32"))
    (photo_dir / "new.png").write_bytes((photo_dir / "img01.png").read_bytes()[:-1] + b"\0")
    for command in (["index"], ["query", str(photo_dir / "new.png")]):  # (an indexed photo needs no model)
        done = run_script("edge-search", *command, env=env)
        assert done.returncode in (3, 7) and "Traceback" not in done.stderr, (command, done.stderr)
    assert run_script("edge-search", "dupes", env=env).returncode == 0  # needs no model: the index is intact
    verify = run_script("edge-search", "verify", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(verify.stdout)["checks"]}
    assert verify.returncode != 0 and "dimensions" in checks["graph fp32"]["detail"]
    good = run_script("edge-search", "query", str(photo_dir / "img01.png"), "--model", str(tiny_bundle), env=env)
    assert good.returncode == 0, good.stderr  # the index was not damaged


def test_a_replaced_graph_with_its_hash_updated_is_caught_by_verify_and_on_load(bundle_copy, tmp_path):
    path = bundle_copy / "model.fp32.onnx"
    graph = onnx.load(path)
    weights = max(graph.graph.initializer, key=lambda t: np.prod(t.dims))
    values = onnx.numpy_helper.to_array(weights).copy()
    np.random.default_rng(0).shuffle(values.reshape(-1))  # another function, same file size
    weights.CopyFrom(onnx.numpy_helper.from_array(values, weights.name))
    onnx.save(graph, path)

    def rehash(manifest):
        manifest["files"]["fp32"].update(sha256=sha256_file(path), bytes=path.stat().st_size)

    edit_manifest(bundle_copy, rehash)
    with pytest.raises(BundleError, match="does not compute what was exported"):
        Model.open(bundle_copy, ModelOptions(device="cpu", precision="fp32"))
    (tmp_path / "photos").mkdir()
    env = cli_env(tmp_path, bundle_copy)
    done = run_script("edge-search", "index", str(tmp_path / "photos"), "--precision", "fp16", env=env)
    assert done.returncode == 0, done.stderr  # the fp16 graph is intact: an index to verify
    verify = run_script("edge-search", "verify", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(verify.stdout)["checks"]}
    assert verify.returncode != 0 and checks["graph fp32"]["status"] == "fail"
    assert "does not compute what was exported" in checks["graph fp32"]["detail"]
    assert checks["graph fp16"]["status"] == "ok"


def test_verify_reproduces_each_graph_of_a_good_bundle(tiny_bundle, tmp_path, photo_dir):
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    verify = run_script("edge-search", "verify", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(verify.stdout)["checks"]}
    for precision in Bundle.load(tiny_bundle).precisions:
        assert checks[f"graph {precision}"]["status"] == "ok", checks[f"graph {precision}"]


@pytest.mark.parametrize("name", ["../bundle/model.fp32.onnx", "/etc/passwd", "sub/model.onnx", ".."])
def test_a_manifest_path_that_leads_out_of_the_bundle_is_refused(bundle_copy, name):
    edit_manifest(bundle_copy, lambda m: m["files"]["fp32"].update(path=name))
    with pytest.raises(BundleError, match="plain names"):
        Bundle.load(bundle_copy)


@pytest.mark.parametrize("where", ["occupied", "/proc", "a-file"])
def test_an_index_goes_only_into_a_new_or_empty_folder_or_an_existing_index(tmp_path, tiny_bundle, photo_dir, where):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    (tmp_path / "a-file").write_text("x")
    target = where if where.startswith("/") else str(tmp_path / where)
    env = cli_env(tmp_path, tiny_bundle)
    done = run_script("edge-search", "index", str(photo_dir), "--index", target, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and target in done.stderr
    assert sorted(p.name for p in occupied.iterdir()) == ["notes.txt"]


def test_identical_files_in_one_run_are_embedded_once(tmp_path, tiny_bundle, photo_dir):
    for i in range(6):
        shutil.copyfile(photo_dir / "img01.png", photo_dir / f"copy{i}.png")
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    with Library(tmp_path / "index") as library:
        report = library.index(model, [photo_dir])
        assert report.added == 18 and report.embedded == 12 and not report.failed
        first = library.query(model, images=[photo_dir / "img01.png"], k=7)
    assert all(hit.score == pytest.approx(1.0, abs=1e-5) for hit in first.hits)


def test_an_upload_declaring_huge_pixels_is_refused_before_decoding(tiny_bundle, tmp_path, photo_dir):
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    with pytest.raises(ImageDecodeError, match="65000x65000"):
        model.preprocessor.load_bytes(lying_jpeg(), "upload", max_declared_pixels=model.preprocessor.max_pixels)
    with pytest.raises(ImageDecodeError, match="truncated"):
        model.preprocessor.load_bytes(lying_jpeg(), "indexed file")  # the indexer: a failure, never "ok"
    with Library(tmp_path / "index") as library:
        library.index(model, [photo_dir])
    app = make_app(Library(tmp_path / "index"), model, ServiceConfig())
    with TestClient(app, base_url="http://localhost") as client:
        answer = client.post("/api/query", files={"image": ("q.jpg", lying_jpeg(), "image/jpeg")})
        assert answer.status_code == 413 and "megapixels" in answer.json()["error"]


def test_the_pixels_a_search_declares_are_budgeted_before_anything_is_decoded(tiny_bundle, tmp_path, photo_dir):
    """Eight small PNGs each declaring ~100 MP (under the one-photo limit) are one search of ~800 MP: refused from
    their headers (413, one JSON line), though each photo alone would be decoded."""
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    with Library(tmp_path / "index") as library:
        library.index(model, [photo_dir])
    app = make_app(Library(tmp_path / "index"), model, ServiceConfig())
    side = int((0.9 * model.preprocessor.max_pixels) ** 0.5)  # each photo alone under its limit (memory-derived)
    huge = lying_png(side, side)
    assert len(huge) < 2000 and 8 * side * side > 200_000_000
    with TestClient(app, base_url="http://localhost") as client:
        answer = client.post("/api/query", files=[("image", (f"{i}.png", huge, "image/png")) for i in range(8)])
        assert answer.status_code == 413 and f"{8 * side * side / 1e6:.0f} megapixels" in answer.json()["error"]
        alone = client.post("/api/query", files={"image": ("one.png", (photo_dir / "img01.png").read_bytes())})
        assert alone.status_code == 200


def test_one_clients_searches_in_flight_share_one_pixel_budget(tiny_bundle, tmp_path):
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    (tmp_path / "index").mkdir()
    service = Service(Library(tmp_path / "index"), model, ServiceConfig(max_query_pixels=200_000_000))

    async def scenario():
        async with service.client_slot("10.0.0.1", pixels=150_000_000):
            with pytest.raises(HttpError) as refused:
                async with service.client_slot("10.0.0.1", pixels=100_000_000):
                    pass
            assert refused.value.status == 429
            async with service.client_slot("10.0.0.2", pixels=150_000_000):  # another client has its own
                pass
        async with service.client_slot("10.0.0.1", pixels=150_000_000):  # the budget comes back
            pass

    asyncio.run(scenario())
    service.close()


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}],
)
def test_another_sites_page_cannot_make_a_browser_search_or_ask_for_dupes(tiny_bundle, tmp_path, photo_dir, headers):
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    with Library(tmp_path / "index") as library:
        library.index(model, [photo_dir])
    upload = {"image": ("q.png", (photo_dir / "img01.png").read_bytes())}
    with TestClient(make_app(Library(tmp_path / "index"), model, ServiceConfig()), base_url="http://localhost") as c:
        assert c.post("/api/query", files=upload, headers=headers).status_code == 403
        assert c.get("/api/dupes", headers=headers).status_code == 403
        same = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
        assert c.post("/api/query", files=upload, headers=same).status_code == 200
        assert c.get("/api/dupes", headers=same).status_code == 200
    token = {"Authorization": "Bearer a-long-enough-test-token"}
    app = make_app(Library(tmp_path / "index"), model, ServiceConfig(token="a-long-enough-test-token"))
    with TestClient(app, base_url="http://localhost") as client:  # a program holding the token may
        assert client.post("/api/query", files=upload, headers={**headers, **token}).status_code == 200


def test_photos_and_thumbnails_may_not_be_embedded_by_another_site(tiny_bundle, tmp_path, photo_dir):
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    with Library(tmp_path / "index") as library:
        library.index(model, [photo_dir])
    with TestClient(make_app(Library(tmp_path / "index"), model, ServiceConfig()), base_url="http://localhost") as c:
        for path in ("/api/image/1", "/api/thumb/1"):
            answer = c.get(path)
            assert answer.status_code == 200 and answer.headers["cross-origin-resource-policy"] == "same-origin"


def test_one_client_may_have_only_a_few_searches_in_flight(tiny_bundle, tmp_path):
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    (tmp_path / "index").mkdir()
    service = Service(Library(tmp_path / "index"), model, ServiceConfig(queries_per_client=2))

    async def scenario():
        async with service.client_slot("10.0.0.1"), service.client_slot("10.0.0.1"):
            with pytest.raises(HttpError) as refused:
                async with service.client_slot("10.0.0.1"):
                    pass
            assert refused.value.status == 429
            async with service.client_slot("10.0.0.2"):  # another client is not affected
                pass
        async with service.client_slot("10.0.0.1"):  # slots come back when searches end
            pass

    asyncio.run(scenario())
    service.close()


def test_a_version_2_catalog_is_read_as_is_and_migrated_by_the_next_writer(tmp_path, tiny_bundle, photo_dir):
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    with Library(tmp_path / "index") as library:
        library.index(model, [photo_dir])
    downgrade(tmp_path / "index" / "catalog.sqlite", 2)
    with Catalog.open(tmp_path / "index", create=False) as catalog:
        assert [r.follow_links for r in catalog.roots()] == [False]
    with Library(tmp_path / "index") as library:
        report = library.index(model, rules=RootRules(follow_links=True))
        assert report.embedded == 0 and report.count == 12  # nothing re-embedded
    with Catalog.open(tmp_path / "index", create=False) as catalog:
        assert catalog.get_meta("schema_version") == "7"  # through 3 (links), 4 (signatures), 5 (dates), 6 (videos), 7
        assert [r.follow_links for r in catalog.roots()] == [True]
        assert catalog.unsigned() == []  # the signatures made by that run, without embedding anything


def test_the_self_check_runs_once_per_graph_state_and_engine(tiny_bundle, tmp_path, monkeypatch):
    from edge_search.runtime.model import selfcheck

    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    runs = []
    real = selfcheck.check
    monkeypatch.setattr(selfcheck, "check", lambda *a, **kw: runs.append(1) or real(*a, **kw))
    cache = VerifiedCache(tmp_path / "checked.json")
    selfcheck.check_once(model.session, model.bundle, cache)
    selfcheck.check_once(model.session, model.bundle, cache)
    assert len(runs) == 1


def test_a_request_whose_client_has_gone_is_dropped_not_computed(tiny_bundle, tmp_path, photo_dir):
    """Abandoned searches and dupes reports queued behind a busy worker cost nothing once it reaches them."""
    import threading

    from starlette.requests import Request

    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    with Library(tmp_path / "index") as library:
        library.index(model, [photo_dir])
    service = Service(Library(tmp_path / "index"), model, ServiceConfig())

    async def disconnected() -> dict:
        return {"type": "http.disconnect"}

    async def still_there() -> dict:
        await asyncio.sleep(3600)
        return {}

    def request(receive) -> Request:
        return Request({"type": "http", "method": "GET", "path": "/api/dupes", "headers": []}, receive)

    computed: list[str] = []

    async def scenario():
        busy = threading.Event()
        for worker in (service.worker, service.dupes_worker):  # both workers held, as by a long search and report
            worker.submit(busy.wait)
        gone = [asyncio.ensure_future(service.call_for(request(disconnected), lambda: computed.append("search")))]
        gone += [asyncio.ensure_future(service.dupes(request(disconnected), 0.9 + i / 100, None)) for i in range(5)]
        kept = asyncio.ensure_future(service.call_for(request(still_there), lambda: computed.append("kept") or 7))
        await asyncio.sleep(0.5)  # the watchers see the disconnects
        busy.set()
        for task in gone:
            with pytest.raises(HttpError) as dropped:
                await task
            assert dropped.value.status == 499
        assert await kept == 7

    asyncio.run(scenario())
    assert computed == ["kept"] and service.abandoned == 6
    service.close()
