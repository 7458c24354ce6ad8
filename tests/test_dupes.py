"""`dupes`: groups that are safe to act on. Exact copies (same bytes) always form their own `exact` group; a `near`
group is a keeper (the best picture) and files at or above the threshold *to that keeper*, one per content, so
deleting every non-keeper always leaves a kept file with the same picture, whatever chains the data holds.
Nothing is deleted by edge-search itself."""

from __future__ import annotations

import json
import os
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


def stored(index_dir: Path) -> dict[str, tuple[str, np.ndarray]]:
    """path -> (sha256, float32 embedding), read from the catalog independently of the dupes code."""
    with Catalog.open(index_dir, create=False) as catalog:
        rows = catalog.db.execute("SELECT path, sha256, embedding FROM files WHERE status='ok'").fetchall()
    return {r[0].decode(): (r[1], np.frombuffer(r[2], dtype=np.float32)) for r in rows}


def picture_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size[0] * image.size[1], Path(path).stat().st_size


def assert_safe_to_act_on(report, index_dir: Path) -> None:
    """The rule, checked on the report against the catalog's own hashes and embeddings."""
    rows, threshold = stored(index_dir), report.threshold
    copies: dict[str, set[str]] = {}
    for path, (sha, _) in rows.items():
        copies.setdefault(sha, set()).add(path)
    exact = [g for g in report.groups if g.kind == "exact"]
    near = [g for g in report.groups if g.kind == "near"]
    assert sorted(sorted(f.path for f in g.files) for g in exact) == sorted(
        sorted(same) for same in copies.values() if len(same) > 1
    ), "every set of identical files is one exact group, and nothing else is"
    in_near = [f.path for g in near for f in g.files]
    assert len(in_near) == len(set(in_near)), "no file is in two near groups"
    assert len({rows[p][0] for p in in_near}) == len(in_near), "a near group holds one file per content"
    for group in near:
        keeper = rows[group.keep][1]
        assert group.files[0].path == group.keep
        for file, listed in zip(group.files, group.scores_to_keep):
            assert float(rows[file.path][1] @ keeper) >= threshold, f"{file.path} is below the threshold to its keeper"
            assert listed == pytest.approx(float(rows[file.path][1] @ keeper), abs=1e-6)
        assert picture_size(group.keep) == max(picture_size(f.path) for f in group.files), "the keeper is the best"
    # nothing that passes is left out: of any two distinct contents that pass, one is in a near group
    grouped = {rows[p][0] for p in in_near}
    contents = {sha: rows[sorted(paths)[0]][1] for sha, paths in copies.items()}
    shas = sorted(contents)
    for i, a in enumerate(shas):
        for b in shas[i + 1 :]:
            if float(contents[a] @ contents[b]) >= threshold + 1e-6:
                assert a in grouped or b in grouped


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
def test_at_every_threshold_each_member_passes_against_its_keeper_and_exact_copies_stand_apart(library, quantile):
    with Catalog.open(library.directory, create=False) as catalog:
        vectors = np.stack([v for _, chunk in catalog.vectors() for v in chunk])
    similarities = np.sort((vectors @ vectors.T)[np.triu_indices(len(vectors), 1)])
    # halfway across a clear gap near the quantile: no pair sits within rounding error of the threshold
    gaps = np.flatnonzero(np.diff(similarities) >= 1e-5)
    at = gaps[np.argmin(np.abs(gaps - quantile * len(similarities)))]
    threshold = float(similarities[at] + similarities[at + 1]) / 2
    report = library.dupes(threshold=threshold)
    assert_safe_to_act_on(report, library.directory)
    assert report.threshold == threshold and report.threshold_source == "option" and report.files == len(vectors)


def test_a_group_larger_than_the_first_neighbour_search_is_complete(library, variants):
    with Catalog.open(library.directory, create=False) as catalog:
        rows = {p: v for keys, chunk in catalog.vectors() for p, v in zip(catalog.paths_for(keys).values(), chunk)}
    many = [v for p, v in rows.items() if Path(p).name.startswith("many-")]
    # every re-encoding links to every other (less a hair: the index compares its own rounding of the vectors)
    threshold = float(np.min(np.stack(many) @ np.stack(many).T)) - 1e-4
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


def planted_library(root: Path, tiny_bundle: Path, pictures: list[tuple[str, int, np.ndarray]]) -> Library:
    """An index whose embeddings are chosen, not computed: (file name, picture side in pixels, direction).
    Files of the same side and direction are written as byte-identical copies."""
    from edge_search.runtime.files import sha256_file
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.store.generations import IndexWriter

    root.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.load(tiny_bundle)
    written: dict[tuple[int, bytes], Path] = {}
    rows = []
    for name, side, direction in pictures:
        path = root / name
        vector = np.zeros(bundle.dim, dtype=np.float32)
        vector[: len(direction)] = direction
        vector /= np.linalg.norm(vector)
        same = written.setdefault((side, vector.tobytes()), path)
        if same == path:
            photo(side, side, side).save(path)
        else:
            shutil.copyfile(same, path)
        stat = path.stat()
        rows.append((os.fsencode(path), stat.st_size, stat.st_mtime_ns, sha256_file(path), vector, None))
    with IndexWriter(root / "index", bundle, precision="fp32") as writer:
        writer.commit_results(rows)
        writer.publish()
    return Library(root / "index")


def chain(cos: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A~B and B~C at `cos`; A and C only at cos(2θ), below it."""
    sin = float(np.sqrt(1 - cos**2))
    return np.array([cos, sin]), np.array([1.0, 0.0]), np.array([cos, -sin])


@pytest.mark.parametrize("threshold", [0.9, 0.95, 0.98])
def test_a_chain_is_one_group_only_through_a_keeper_both_ends_pass_against(tiny_bundle, tmp_path, threshold):
    a, b, c = chain(cos=(1 + threshold) / 2)  # A and C: below the threshold to each other
    assert float(a @ c) < threshold
    middle_best = planted_library(tmp_path / "b", tiny_bundle, [("a.png", 60, a), ("b.png", 90, b), ("c.png", 70, c)])
    report = middle_best.dupes(threshold=threshold)
    assert [[Path(f.path).name for f in g.files] for g in report.groups] == [["b.png", "a.png", "c.png"]]
    assert_safe_to_act_on(report, middle_best.directory)
    end_best = planted_library(tmp_path / "a", tiny_bundle, [("a.png", 90, a), ("b.png", 70, b), ("c.png", 60, c)])
    report = end_best.dupes(threshold=threshold)
    assert [[Path(f.path).name for f in g.files] for g in report.groups] == [["a.png", "b.png"]]  # C: alone
    assert_safe_to_act_on(report, end_best.directory)


def test_exact_copies_beside_a_near_group_keep_their_own_group(tiny_bundle, tmp_path):
    near = np.array([0.99, float(np.sqrt(1 - 0.99**2))])
    library = planted_library(
        tmp_path,
        tiny_bundle,
        [("unrelated.png", 80, np.array([0.0, 0.0, 1.0])), ("copy-1.png", 60, near), ("copy-2.png", 60, near),
         ("best.png", 90, np.array([1.0, 0.0]))],
    )  # fmt: skip
    report = library.dupes(threshold=0.95)
    groups = sorted((g.kind, [Path(f.path).name for f in g.files]) for g in report.groups)
    assert groups == [("exact", ["copy-1.png", "copy-2.png"]), ("near", ["best.png", "copy-1.png"])]
    assert_safe_to_act_on(report, library.directory)
    assert "keeper" in report.as_dict()["rule"]


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
