"""`dupes`: exact copies are always grouped; at a given threshold the groups are exactly the connected
components of "same bytes or cosine >= threshold", whatever the group sizes; each group suggests the
largest picture as its keeper; nothing is deleted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli_env, photo, run_script
from edge_search.runtime.errors import UsageError
from edge_search.runtime.jobs.dupes import FIRST_K
from edge_search.runtime.library import Library, Model
from edge_search.runtime.options import ModelOptions
from edge_search.runtime.store.catalog import Catalog

ORIGINALS = 4


@pytest.fixture(scope="module")
def model(tiny_bundle) -> Model:
    return Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> Path:
    """Originals with an exact copy, a half-size copy, a re-encoded copy and a cropped copy each; one
    original with more re-encodings than the first neighbour search returns; and distinct pictures."""
    root = tmp_path_factory.mktemp("variants")
    for i in range(ORIGINALS):
        original = photo(500 + i, 320, 240)
        original.save(root / f"o{i}.png")
        shutil.copyfile(root / f"o{i}.png", root / f"o{i}-copy.png")
        original.resize((160, 120), Image.LANCZOS).save(root / f"o{i}-half.png")
        original.save(root / f"o{i}-q70.jpg", quality=70)
        original.crop((8, 6, 312, 234)).save(root / f"o{i}-crop.png")
    many = photo(900, 320, 240)
    for quality in range(50, 50 + FIRST_K + 6):
        many.save(root / f"many-q{quality}.jpg", quality=quality)
    for i in range(8):
        photo(700 + i, 200, 150).save(root / f"other{i}.png")
    return root


@pytest.fixture
def library(tmp_path, model, variants):
    with Library(tmp_path / "index") as library:
        library.index(model, [variants])
        yield library


def components_by_brute_force(index_dir: Path, threshold: float) -> set[frozenset[str]]:
    """The specification, computed independently: all pairs from the stored embeddings and hashes."""
    with Catalog.open(index_dir, create=False) as catalog:
        rows = catalog.db.execute("SELECT path, sha256, embedding FROM files WHERE status='ok' ORDER BY id").fetchall()
    paths = [r[0].decode() for r in rows]
    vectors = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
    linked = (vectors @ vectors.T) >= threshold
    linked |= np.array([[a[1] == b[1] for b in rows] for a in rows])
    seen, groups = set(), set()
    for start in range(len(paths)):
        if start in seen:
            continue
        members, frontier = {start}, [start]
        while frontier:
            row = frontier.pop()
            for other in np.flatnonzero(linked[row]):
                if other not in members:
                    members.add(int(other))
                    frontier.append(int(other))
        seen |= members
        if len(members) > 1:
            groups.add(frozenset(paths[m] for m in members))
    return groups


def found_groups(report) -> set[frozenset[str]]:
    return {frozenset(f.path for f in g.files) for g in report.groups}


def test_exact_copies_are_always_grouped_and_called_exact(library, variants):
    report = library.dupes(threshold=1.0)
    exact = [g for g in report.groups if g.kind == "exact"]
    for i in range(ORIGINALS):
        pair = {str(variants / f"o{i}.png"), str(variants / f"o{i}-copy.png")}
        assert any(pair <= {f.path for f in g.files} for g in exact)
    for group in exact:
        assert len({f.sha256 for f in group.files}) == 1 and group.scores_to_keep == [1.0] * len(group.files)


@pytest.mark.parametrize("quantile", [0.5, 0.9, 0.97, 0.995])
def test_groups_are_the_connected_components_at_the_threshold(library, quantile):
    with Catalog.open(library.directory, create=False) as catalog:
        vectors = np.stack([v for _, chunk in catalog.vectors() for v in chunk])
    similarities = np.sort((vectors @ vectors.T)[np.triu_indices(len(vectors), 1)])
    # halfway across a clear gap near the quantile: no pair sits within rounding error of the threshold
    gaps = np.flatnonzero(np.diff(similarities) >= 1e-5)
    at = gaps[np.argmin(np.abs(gaps - quantile * len(similarities)))]
    threshold = float(similarities[at] + similarities[at + 1]) / 2
    report = library.dupes(threshold=threshold)
    assert found_groups(report) == components_by_brute_force(library.directory, threshold)
    assert report.threshold == threshold and report.threshold_source == "option" and report.files == len(vectors)


def test_a_group_larger_than_the_first_neighbour_search_is_complete(library, variants):
    with Catalog.open(library.directory, create=False) as catalog:
        rows = {p: v for keys, chunk in catalog.vectors() for p, v in zip(catalog.paths_for(keys).values(), chunk)}
    many = [v for p, v in rows.items() if Path(p).name.startswith("many-")]
    threshold = float(np.min(np.stack(many) @ np.stack(many).T))  # every re-encoding links to every other
    report = library.dupes(threshold=threshold)
    group = next(g for g in report.groups if any(Path(f.path).name.startswith("many-") for f in g.files))
    assert sum(Path(f.path).name.startswith("many-") for f in group.files) == FIRST_K + 6


@pytest.mark.parametrize("threshold", [0.9999, 0.99999])
def test_the_keeper_is_the_largest_picture_then_the_largest_file_and_listed_first(library, threshold):
    report = library.dupes(threshold=threshold)
    assert report.groups
    for group in report.groups:
        best = max((f.width * f.height, f.size) for f in group.files)
        assert (
            group.files[0].path == group.keep
            and (group.files[0].width * group.files[0].height, group.files[0].size) == best
        )
        assert group.scores_to_keep[0] == pytest.approx(1.0, abs=1e-5)
        assert len(group.pairs) == len(group.files) * (len(group.files) - 1) // 2


def test_under_restricts_the_search_and_a_bad_threshold_is_refused(model, variants, tmp_path):
    photos = shutil.copytree(variants, tmp_path / "photos")
    (photos / "sub").mkdir()
    photo(1).save(photos / "sub" / "one.png")
    photo(1).save(photos / "sub" / "same.png")
    with Library(tmp_path / "index") as library:
        library.index(model, [photos])
        inside = library.dupes(threshold=0.9999, under_dir=photos / "sub")
        assert [sorted(f.path for f in g.files) for g in inside.groups] == [
            [str(photos / "sub" / "one.png"), str(photos / "sub" / "same.png")]
        ]
        with pytest.raises(UsageError):
            library.dupes(threshold=1.5)


def test_the_threshold_defaults_to_the_bundles(library, tiny_bundle):
    report = library.dupes()
    recorded = json.loads((tiny_bundle / "manifest.json").read_text())["dupe_threshold"]
    assert report.threshold == recorded and report.threshold_source == "bundle"


def test_dupes_through_the_installed_script(tmp_path, tiny_bundle, variants):
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(variants), env=env).returncode == 0
    before = sorted(p.name for p in variants.iterdir())
    result = run_script(
        "edge-search", "dupes", "--threshold", "0.9999", "--json", "--montage", str(tmp_path / "sheets"), env=env
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["groups"] and all(g["keep"] == g["paths"][0] and g["kind"] in ("exact", "near") for g in body["groups"])
    assert sorted(p.name for p in (tmp_path / "sheets").iterdir()) == [
        f"group-{n:04d}.jpg" for n in range(1, len(body["groups"]) + 1)
    ]
    listed = run_script("edge-search", "dupes", "--threshold", "0.9999", "-f", env=env).stdout.split()
    assert sorted(listed) == sorted(p for g in body["groups"] for p in g["paths"][1:])
    text = run_script("edge-search", "dupes", "--threshold", "0.9999", env=env)
    assert text.returncode == 0 and "keep" in text.stdout and "group(s)" in text.stderr
    assert sorted(p.name for p in variants.iterdir()) == before  # nothing deleted
    assert run_script("edge-search", "dupes", "--threshold", "2", env=env).returncode == 2
