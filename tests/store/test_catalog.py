"""The catalog (SQLite) and the vector-index file layer, specified without a model: what a row keeps, what a
failed transaction leaves, what may be served, and how the usearch settings and files are checked.

Written from the survivors of a mutation run over `runtime/store/` (CONTRIBUTING.md: "Tests that can fail"):
each test here fails on a mutant the older tests let through."""

from __future__ import annotations

import numpy as np
import pytest

from edge_search.runtime.errors import IndexCorrupt, StorageError, UsageError
from edge_search.runtime.store import vector_index as vi
from edge_search.runtime.store.catalog import Catalog, encode_path

DIM = 4


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def ok_row(name: str, seed: int, signature: bytes | None = b"sig"):
    return (encode_path(f"/photos/{name}"), 100 + seed, 1_000 + seed, f"sha-{seed}", vector(seed), None, signature)


def failed_row(name: str):
    return (encode_path(f"/photos/{name}"), 7, 7, "sha-broken", None, "cannot identify image file", b"stray")


@pytest.fixture
def catalog(tmp_path):
    with Catalog.open(tmp_path / "index", create=True) as opened:
        yield opened


def test_an_embedded_row_keeps_its_vector_and_signature_a_failed_row_keeps_neither(catalog):
    catalog.upsert_results([ok_row("a.jpg", 1), failed_row("broken.jpg")])
    states = catalog.states()
    ok, failed = states[encode_path("/photos/a.jpg")], states[encode_path("/photos/broken.jpg")]
    assert (ok.status, failed.status) == ("ok", "failed")
    assert catalog.signatures([ok.id, failed.id]) == {ok.id: b"sig", failed.id: None}
    assert catalog.vector(failed.id) is None
    assert np.allclose(catalog.vector(ok.id), vector(1))
    assert [f.reason for f in catalog.failures()] == ["cannot identify image file"]


def test_a_transaction_that_raises_leaves_nothing_and_the_catalog_stays_writable(catalog):
    catalog.upsert_results([ok_row("kept.jpg", 1)])
    with pytest.raises(RuntimeError, match="interrupted"):
        with catalog.transaction():
            catalog.db.execute("DELETE FROM files")
            raise RuntimeError("interrupted")
    assert catalog.count("ok") == 1 and not catalog.db.in_transaction
    catalog.upsert_results([ok_row("next.jpg", 2)])
    assert catalog.count("ok") == 2


def test_signatures_are_looked_up_in_chunks_and_unknown_ids_are_absent(catalog):
    catalog.upsert_results([ok_row(f"{i:04d}.jpg", i, signature=bytes([i % 251])) for i in range(1, 1201)])
    ids = sorted(state.id for state in catalog.states().values())
    found = catalog.signatures([*ids, 10_000_000])
    assert len(found) == 1200 and 10_000_000 not in found
    assert found[ids[0]] == bytes([1]) and found[ids[-1]] == bytes([1200 % 251])


def test_ok_files_and_every_vector_come_in_id_order_and_in_chunks(catalog):
    catalog.upsert_results([ok_row("b.jpg", 2), failed_row("x.jpg"), ok_row("a.jpg", 1), ok_row("c.jpg", 3)])
    files = catalog.ok_files()
    assert [path for _, path, *_ in files] == ["/photos/b.jpg", "/photos/a.jpg", "/photos/c.jpg"]
    assert [key for key, *_ in files] == sorted(key for key, *_ in files)
    assert files[0][2:] == (102, 1_002, "sha-2")
    chunks = list(catalog.vectors(chunk=2))
    assert [len(keys) for keys, _ in chunks] == [2, 1]
    keys = np.concatenate([k for k, _ in chunks])
    vectors = np.concatenate([v for _, v in chunks])
    assert list(keys) == [key for key, *_ in files]
    assert np.allclose(vectors, [vector(2), vector(1), vector(3)])


def test_only_an_embedded_row_may_be_served(catalog):
    catalog.upsert_results([ok_row("a.jpg", 1), failed_row("broken.jpg")])
    states = catalog.states()
    served = catalog.served_file(states[encode_path("/photos/a.jpg")].id)
    assert served is not None and served.size == 101 and served.mtime_ns == 1_001
    assert catalog.served_file(states[encode_path("/photos/broken.jpg")].id) is None
    assert catalog.served_file(999_999) is None


def test_a_sound_catalog_passes_its_integrity_check(catalog):
    assert catalog.integrity_check() == "ok"


def test_deleting_nothing_deletes_nothing(catalog):
    catalog.upsert_results([ok_row("a.jpg", 1)])
    assert catalog.delete_paths([]) == 0 and catalog.count("ok") == 1
    assert catalog.delete_paths([encode_path("/photos/a.jpg")]) == 1 and catalog.count("ok") == 0


def test_an_index_directory_that_cannot_be_created_is_a_storage_error_naming_it(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StorageError, match=r"^Cannot create the index directory .*a-file/index: Not a directory\.$"):
        Catalog.open(tmp_path / "a-file" / "index", create=True)


def test_index_options_accept_the_three_vector_types_and_name_the_option_otherwise():
    for dtype in ("f16", "f32", "i8"):
        assert vi.IndexOptions(dtype=dtype).applied_to(vi.IndexSettings(dim=DIM)).dtype == dtype
    with pytest.raises(UsageError, match=r"^--dtype must be one of f16, f32, i8, not 'f64'\.$"):
        vi.IndexOptions(dtype="f64")


def test_an_empty_index_answers_nothing_and_a_one_vector_index_answers_it():
    index = vi.IndexSettings(dim=DIM).new_index()
    keys, scores = vi.search(index, vector(1), 5)
    assert len(keys) == len(scores) == 0
    index.add(np.array([7], dtype=np.uint64), vector(1)[None])
    keys, scores = vi.search(index, vector(1), 5)
    assert list(keys) == [7] and scores[0] == pytest.approx(1.0, abs=1e-3)


def test_a_large_collection_is_searched_with_a_wider_breadth_than_configured(monkeypatch):
    index = vi.IndexSettings(dim=DIM, expansion_search=16).new_index()
    keys = np.arange(50, dtype=np.uint64)
    index.add(keys, np.stack([vector(i) for i in range(50)]))
    monkeypatch.setattr(vi, "BREADTH_ANCHOR", 10)  # pretend 50 vectors is a large collection
    vi.search(index, vector(3), 3)
    assert index.expansion_search == vi.expansion_for(50, 16) > 16


def test_a_missing_or_altered_index_file_is_corrupt_and_named(tmp_path):
    index = vi.IndexSettings(dim=DIM).new_index()
    index.add(np.array([1], dtype=np.uint64), vector(1)[None])
    name, sha = vi.write_atomically(index, tmp_path, 3)
    assert len(vi.load_verified(tmp_path / name, sha, view=False)) == 1
    with pytest.raises(IndexCorrupt, match=r"^The index file index\.9\.usearch is missing\.$"):
        vi.load_verified(tmp_path / "index.9.usearch", sha, view=False)
    with pytest.raises(IndexCorrupt, match="does not match the hash"):
        vi.load_verified(tmp_path / name, "0" * 64, view=False, full_hash=True)


def test_stale_generations_and_a_killed_writers_temp_files_are_listed_for_removal_and_nothing_else(tmp_path):
    for name in ("index.1.usearch", "index.2.usearch", ".index.3.usearch.tmp", "catalog.sqlite", "notes.tmp"):
        (tmp_path / name).write_bytes(b"x")
    stale = sorted(p.name for p in vi.stale_files(tmp_path, keep="index.2.usearch"))
    assert stale == [".index.3.usearch.tmp", "index.1.usearch"]
