"""Upgrades keep the index: a catalog of every earlier schema this project shipped is brought up to date in
place by the next writer, step by step, without embedding anything again; a catalog from a newer edge-search
is refused with what to do."""

from __future__ import annotations

import json
import sqlite3

import pytest
from old_catalogs import downgrade

from conftest import cli_env, run_script


def rows(catalog) -> dict[bytes, tuple]:
    with sqlite3.connect(catalog) as db:
        return {r[0]: r[1:] for r in db.execute("SELECT path, id, sha256, embedding FROM files")}


def schema(db) -> dict[str, list[tuple]]:
    """Each table's columns (name, type, not null, default) and the catalog's indexes and triggers."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    found = {t: sorted(tuple(c[1:5]) for c in db.execute(f"PRAGMA table_info({t})")) for t in tables}
    found["objects"] = sorted(db.execute("SELECT type, name FROM sqlite_master WHERE type IN ('index', 'trigger')"))
    return found


def schema_of_a_fresh_catalog(tmp_path, bundle) -> dict[str, list[tuple]]:
    from edge_search.runtime.store.catalog import Catalog

    with Catalog.open(tmp_path / "fresh", create=True) as catalog:
        return schema(catalog.db)


@pytest.mark.slow  # four indexes through the installed CLI
def test_every_earlier_schema_is_upgraded_in_place_by_the_next_index_without_embedding_again(
    tmp_path, tiny_bundle, photo_dir
):
    fresh_schema = None
    for version in (1, 2, 3, 4, 5, 6):
        env = cli_env(tmp_path / f"v{version}", tiny_bundle)
        assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
        catalog = tmp_path / f"v{version}" / "index" / "catalog.sqlite"
        before = rows(catalog)
        downgrade(catalog, version)
        again = run_script("edge-search", "index", str(photo_dir), "--json", env=env)
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        signed = 0 if version >= 4 else 12  # version 4 had signatures already
        dated = 0 if version >= 5 else 12  # version 5 had dates
        assert (report["embedded"], report["unchanged"], report["signed"], report["dated"]) == (0, 12, signed, dated)
        assert rows(catalog) == before  # the same rows, keys and embeddings
        with sqlite3.connect(catalog) as db:
            assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("7",)
            assert db.execute("SELECT count(*) FROM files WHERE taken IS NULL").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM files WHERE inode IS NULL").fetchone() == (0,)  # recorded
            assert schema(db) == (fresh_schema := fresh_schema or schema_of_a_fresh_catalog(tmp_path, tiny_bundle))
            assert [r[0] for r in db.execute("SELECT path FROM roots")] == [str(photo_dir).encode()]
        query = run_script("edge-search", "query", str(photo_dir / "img02.webp"), "-k", "1", "-f", env=env)
        assert query.stdout.strip() == str(photo_dir / "img02.webp")


def test_a_reader_uses_an_old_catalog_as_it_is_and_a_newer_one_is_refused(tmp_path, tiny_bundle, photo_dir):
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    catalog = tmp_path / "index" / "catalog.sqlite"
    downgrade(catalog, 1)
    old = run_script("edge-search", "query", str(photo_dir / "img02.webp"), "-k", "1", "-f", env=env)
    assert old.returncode == 0 and old.stdout.strip() == str(photo_dir / "img02.webp")
    with sqlite3.connect(catalog) as db:  # a reader migrates nothing
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    newer = run_script("edge-search", "index", str(photo_dir), env=env)
    assert newer.returncode == 8 and "made by a newer edge-search" in newer.stderr
    with sqlite3.connect(catalog) as db:  # refused before anything was written
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("99",)
