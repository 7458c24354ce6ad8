"""The store: incremental indexing, self-retrieval, the writer lock, repair from SQLite, bundle mismatch, recall."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import photo
from edge_search.export.synthetic import clustered_embeddings as clustered
from edge_search.runtime.errors import IndexBusy, IndexCorrupt, IndexMismatch
from edge_search.runtime.jobs.indexer import RunOptions, run_index
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.model.embedder import Embedder
from edge_search.runtime.model.preprocess import Preprocessor
from edge_search.runtime.model.session import open_session
from edge_search.runtime.store import vector_index as vi
from edge_search.runtime.store.catalog import Catalog
from edge_search.runtime.store.generations import IndexReader, IndexWriter


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    session, _ = open_session(bundle, device="cpu", precision="fp32")
    return bundle, Embedder(session, Preprocessor.from_manifest(bundle.manifest), batch_size=4)


def index_once(engine, directory, roots, prune=True):
    bundle, embedder = engine
    with IndexWriter(directory, bundle, precision="fp32") as writer:
        return run_index(writer, embedder, roots, RunOptions(prune=prune, commit_every=3))


def query(engine, directory, path, k=3):
    bundle, embedder = engine
    reader = IndexReader(directory)
    try:
        return reader.search(embedder.embed_pixels(embedder.preprocessor.load(path)[None])[0], k)
    finally:
        reader.close()


def test_incremental_add_modify_delete(engine, photo_dir, tmp_path):
    index = tmp_path / "index"
    first = index_once(engine, index, [photo_dir])
    assert (first.added, first.updated, first.removed, first.count) == (12, 0, 0, 12)
    again = index_once(engine, index, [photo_dir])
    assert (again.added, again.updated, again.unchanged, again.embedded) == (0, 0, 12, 0)

    changed = photo_dir / "img01.png"
    photo(999, 200, 150).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    (photo_dir / "sub" / "img04.gif").unlink()
    photo(1000).save(photo_dir / "new.jpg")
    third = index_once(engine, index, [photo_dir])
    assert (third.added, third.updated, third.removed, third.unchanged, third.count) == (1, 1, 1, 10, 12)
    with Catalog.open(index, create=False) as catalog:
        assert catalog.index_meta().index_count == 12  # what `info` reports of the published file
    assert query(engine, index, changed)[0].path == str(changed)
    assert all(
        h.path != str(photo_dir / "sub" / "img04.gif") for h in query(engine, index, photo_dir / "new.jpg", k=12)
    )


def test_a_run_killed_between_commit_and_publish_is_published_by_the_next_run(engine, tmp_path, monkeypatch):
    index = tmp_path / "index"
    first = tmp_path / "first"
    first.mkdir()
    photo(1).save(first / "a.jpg")
    index_once(engine, index, [first])
    photo(2).save(first / "b.jpg")
    photo(3).save(first / "c.jpg")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the index file")

    with monkeypatch.context() as patch:
        patch.setattr(vi, "write_atomically", killed)
        with pytest.raises(KeyboardInterrupt):
            index_once(engine, index, [first])  # the catalog committed b and c; no generation holds them

    again = index_once(engine, index, [first])
    assert (again.added, again.unchanged) == (0, 3)  # nothing left to embed...
    reader = IndexReader(index)
    try:
        assert len(reader.index()) == reader.catalog.count() == 3  # ...but the published index caught up
    finally:
        reader.close()
    assert query(engine, index, first / "c.jpg")[0].path == str(first / "c.jpg")


def test_a_file_deleted_during_indexing_is_reported_not_recorded_as_failed(engine, photo_dir, tmp_path):
    bundle, embedder = engine
    doomed = photo_dir / "img05.tiff"
    with IndexWriter(tmp_path / "index", bundle, precision="fp32") as writer:
        summary = run_index(writer, embedder, [photo_dir], RunOptions(on_start=lambda _: doomed.unlink()))
    assert summary.count == 11 and summary.failed == []
    assert (str(doomed), "deleted during indexing") in summary.problems


def test_no_prune_keeps_deleted_files(engine, photo_dir, tmp_path):
    index = tmp_path / "index"
    index_once(engine, index, [photo_dir])
    (photo_dir / "img02.webp").unlink()
    assert index_once(engine, index, [photo_dir], prune=False).count == 12
    assert index_once(engine, index, [photo_dir]).count == 11


def test_every_indexed_image_is_its_own_top_1(engine, photo_dir, tmp_path):
    index = tmp_path / "index"
    index_once(engine, index, [photo_dir])
    for path in sorted(p for p in photo_dir.rglob("*") if p.is_file()):
        top = query(engine, index, path, k=1)[0]
        assert top.path == str(path) and top.score > 0.999


def test_a_second_writer_is_refused_at_once_naming_the_first(engine, tmp_path):
    bundle, _ = engine
    with IndexWriter(tmp_path / "index", bundle, precision="fp32"):
        started = time.monotonic()
        with pytest.raises(IndexBusy, match=f"pid {os.getpid()}"):
            with IndexWriter(tmp_path / "index", bundle, precision="fp32"):
                pass
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("damage", ["missing", "bitflip", "truncated", "empty", "foreign"])
def test_a_damaged_index_file_is_rebuilt_from_sqlite(engine, photo_dir, tmp_path, damage):
    index = tmp_path / "index"
    index_once(engine, index, [photo_dir])
    (file,) = index.glob("index.*.usearch")
    data = file.read_bytes()
    if damage == "missing":
        file.unlink()
    elif damage == "bitflip":
        file.write_bytes(data[:100] + bytes([data[100] ^ 0x10]) + data[101:])
    elif damage == "truncated":
        file.write_bytes(data[: len(data) // 3])
    elif damage == "empty":
        file.write_bytes(b"")
    else:
        file.write_bytes(os.urandom(len(data)))
    target = photo_dir / "img03.bmp"
    reader = IndexReader(index)
    try:
        bundle, embedder = engine
        hits = reader.search(embedder.embed_pixels(embedder.preprocessor.load(target)[None])[0], 1)
        assert hits[0].path == str(target)
        notes = reader.take_notes()
        assert any("Rebuilt" in note for note in notes) and any("Republished" in note for note in notes)
        assert reader.take_notes() == []  # each note is told once
    finally:
        reader.close()
    assert query(engine, index, target)[0].path == str(target)  # republished: the next reader is served directly


def _variant(bundle: Path, directory: Path, change) -> Bundle:
    other = shutil.copytree(bundle, directory)
    manifest = json.loads((other / "manifest.json").read_text())
    change(manifest)
    (other / "manifest.json").write_text(json.dumps(manifest))
    return Bundle.load(other)


def test_a_bundle_with_other_preprocessing_or_weights_is_refused_with_how_to_reindex(engine, photo_dir, tmp_path):
    index = tmp_path / "index"
    index_once(engine, index, [photo_dir])
    other_mean = _variant(
        engine[0].root, tmp_path / "mean", lambda m: m["preprocess"].update(image_mean=[0.4, 0.4, 0.4])
    )
    other_weights = _variant(engine[0].root, tmp_path / "weights", lambda m: m.update(source_sha256="0" * 64))
    for other in (other_mean, other_weights):
        with pytest.raises(IndexMismatch, match="--index NEW_INDEX_DIR") as refused:
            with IndexWriter(index, other, precision="fp32"):
                pass
        assert (
            "other weights or other preprocessing. Embeddings of different models cannot be compared. Use the "
            "original bundle (--model)" in str(refused.value)
        )


def test_what_does_not_change_embeddings_does_not_change_the_binding(engine, photo_dir, tmp_path):
    """Timestamps, versions, opset notes, precisions carried: none of them locks a user out."""
    index = tmp_path / "index"
    index_once(engine, index, [photo_dir])

    def cosmetic(manifest):
        manifest.update(created_at="2030-01-01T00:00:00+00:00", versions={"torch": "9.9"}, model_id="/elsewhere/vit")
        manifest["files"].pop("fp16")

    with IndexWriter(index, _variant(engine[0].root, tmp_path / "same", cosmetic), precision="int8"):
        pass


@pytest.mark.slow
def test_hnsw_recall_at_10_with_default_settings(monkeypatch):
    both = clustered(20_200, 768, 200, seed=7)  # one draw: queries come from the same clusters
    data, queries = both[:20_000], both[20_000:]
    index = vi.IndexSettings(dim=768).new_index()
    index.add(np.arange(len(data), dtype=np.uint64), data)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    monkeypatch.setattr(vi, "EXACT_SEARCH_MAX", 0)  # force the HNSW path
    found = [vi.search(index, q, 10)[0] for q in queries]
    recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.99


def test_collections_up_to_the_switch_are_searched_exactly():
    data = clustered(3_000, 768, 30, seed=9)
    queries = clustered(50, 768, 30, seed=10)
    index = vi.IndexSettings(dim=768, dtype="f32", expansion_search=4).new_index()  # a hopeless HNSW setting
    index.add(np.arange(len(data), dtype=np.uint64), data)
    assert len(index) <= vi.EXACT_SEARCH_MAX
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    for query, expected in zip(queries, truth):
        keys, scores = vi.search(index, query, 10)
        assert keys.tolist() == expected.tolist()
        assert np.allclose(scores, (data[expected] @ query), atol=1e-5)  # scores are cosine similarities


def test_readers_hash_an_index_file_once_per_state_and_still_catch_damage(tmp_path, monkeypatch):
    """A full sha256 of a 1.5 GB index on every query would take seconds: it is done once per file state."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    index = vi.IndexSettings(dim=16).new_index()
    index.add(np.arange(3000, dtype=np.uint64), clustered(3000, 16, 10, seed=1))
    name, sha = vi.write_atomically(index, tmp_path, 1)
    path = tmp_path / name
    hashed = []
    real = vi.sha256_file
    monkeypatch.setattr(vi, "sha256_file", lambda p: hashed.append(p) or real(p))
    for _ in range(3):
        assert len(vi.load_verified(path, sha, view=True)) == 3000
    assert hashed == []  # the writer remembered the state it wrote
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # a bit flip in the middle: the file's state changes, so it is hashed again
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt):
        vi.load_verified(path, sha, view=True)
    assert hashed == [path]
