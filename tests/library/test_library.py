"""The library API (`Library`, `Model`) as a program uses it, and what an index remembers and reuses."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import photo
from edge_search.runtime.errors import IndexMissing, UsageError
from edge_search.runtime.library import Library, Model, RootRules, RunOptions
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.options import ModelOptions


@pytest.fixture
def library(tmp_path):
    with Library(tmp_path / "index") as library:
        yield library


def test_index_query_info_remove_in_a_few_lines(model, library, photo_dir):
    report = library.index(model, [photo_dir])
    assert (report.added, report.count, report.failed, report.embedded) == (12, 12, [], 12)
    target = photo_dir / "img03.bmp"
    best = library.query(model, images=[target], k=3).hits
    assert best[0].path == str(target) and best[0].score == pytest.approx(1.0, abs=1e-3) and len(best) == 3
    by_key = library.query(key=best[0].key, k=1).hits  # "more like this" needs no model
    assert by_key[0].path == str(target)
    by_vector = library.query(vector=model.embed_image(target), k=1).hits
    assert by_vector[0].path == str(target)
    info = library.info()
    assert info.count == 12 and info.meta.dim == 48 and [r.path for r in info.roots] == [str(photo_dir)]
    removed = library.remove([photo_dir / "sub"])
    assert removed.removed == 3 and removed.forgotten_roots == []
    assert library.info().count == 9


def test_remove_and_info_need_no_model_bundle(model, library, photo_dir, tiny_bundle, tmp_path):
    moved_bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    library.index(Model.open(moved_bundle, ModelOptions(device="cpu")), [photo_dir])
    shutil.rmtree(moved_bundle)
    assert library.info().count == 12
    assert library.remove([photo_dir]).removed == 12
    assert library.roots() == []  # removing a root folder forgets it


def test_a_query_states_its_problem(model, library, photo_dir):
    with pytest.raises(IndexMissing):
        library.query(model, images=[photo_dir / "img01.png"])
    library.index(model, [photo_dir])
    with pytest.raises(UsageError):
        library.query(model, k=3)  # no query at all
    with pytest.raises(UsageError):
        library.query(key=10**9)


def test_several_query_images_are_averaged_and_filters_apply(model, library, photo_dir):
    library.index(model, [photo_dir])
    a, b = photo_dir / "img01.png", photo_dir / "img02.webp"
    both = library.query(model, images=[a, b], k=2, exclude_self=False).hits
    mean = model.embed_image(a) + model.embed_image(b)
    expected = library.query(vector=mean, k=2).hits
    assert [h.path for h in both] == [h.path for h in expected]
    without = library.query(model, images=[a], k=12, exclude_self=True).hits
    assert str(a) not in [h.path for h in without] and len(without) == 11
    inside = library.query(model, images=[a], k=5, under_dir=photo_dir / "sub").hits
    assert len(inside) == 3 and all(h.path.startswith(str(photo_dir / "sub") + "/") for h in inside)
    assert [h.rank for h in inside] == [1, 2, 3]
    from_bytes = library.query(model, images=[a.read_bytes()], k=1).hits
    assert from_bytes[0].path == str(a)


def test_hidden_folders_thumbnail_caches_and_recycle_bins_are_skipped_unless_asked(model, library, tmp_path):
    root = tmp_path / "nas"
    for folder in (
        "2024",
        "@eaDir/x.jpg",
        ".thumbnails/large",
        "#recycle",
        ".git/objects",
        "node_modules/pkg",
        "System Volume Information",
    ):
        (root / folder).mkdir(parents=True)
    for i, name in enumerate(
        [
            "2024/a.jpg",
            "2024/b.png",
            "@eaDir/x.jpg/SYNOPHOTO_THUMB_XL.jpg",
            ".thumbnails/large/t.png",
            "#recycle/old.jpg",
            ".git/objects/c.png",
            "node_modules/pkg/logo.png",
            "System Volume Information/s.jpg",
            "2024/.hidden.jpg",
        ]
    ):
        photo(40 + i).save(root / name)
    report = library.index(model, [root])
    assert report.count == 2
    everything = library.index(model, [root], rules=RootRules(include_hidden=True))
    assert everything.count == 9
    again = library.index(model, [root])  # the root remembers include_hidden
    assert again.count == 9 and again.added == 0
    library.index(model, [root], rules=RootRules(include_hidden=False))
    assert library.info().count == 2


def test_roots_and_excludes_are_remembered_so_index_with_no_folder_updates_them(model, library, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    photo(1).save(first / "one.jpg"), photo(2).save(first / "skip-me.jpg"), photo(3).save(second / "two.jpg")
    library.index(model, [first], rules=RootRules(excludes=("skip-*",)))
    library.index(model, [second])
    photo(4).save(first / "new.jpg")
    photo(5).save(first / "skip-too.jpg")
    update = library.index(model)  # no roots: every remembered one, with its own excludes
    assert (update.added, update.count) == (1, 3)
    assert {r.path: r.excludes for r in library.roots()} == {str(first): ("skip-*",), str(second): ()}


def test_a_moved_or_renamed_folder_keeps_its_embeddings(model, library, photo_dir, tmp_path):
    library.index(model, [tmp_path])
    before = {h.path: h.score for h in library.query(model, images=[photo_dir / "img01.png"], k=12).hits}
    photo_dir.rename(tmp_path / "renamed")
    report = library.index(model, [tmp_path])
    assert (report.moved, report.embedded, report.added, report.removed, report.count) == (
        12,
        0,
        0,
        0,
        12,
    )  # a move is not a removal
    after = {h.path: h.score for h in library.query(model, images=[tmp_path / "renamed" / "img01.png"], k=12).hits}
    assert sorted(after.values()) == pytest.approx(sorted(before.values()), abs=1e-6)


def test_touching_files_re_embeds_nothing_and_publishes_no_new_generation(model, library, photo_dir):
    first = library.index(model, [photo_dir])
    for path in photo_dir.rglob("*.*"):
        os.utime(path, ns=(1_000_000_000_000, 1_000_000_000_000))
    touched = library.index(model, [photo_dir])
    assert (touched.embedded, touched.unchanged, touched.generation) == (0, 12, first.generation)
    unchanged = library.index(model, [photo_dir])
    assert (unchanged.unchanged, unchanged.generation) == (12, first.generation)
    assert len(list(library.directory.glob("index.*.usearch"))) == 1


def test_a_missing_root_is_reported_and_the_others_are_indexed(model, library, photo_dir, tmp_path):
    with pytest.raises(UsageError, match="nowhere"):
        library.index(model, [tmp_path / "nowhere"])
    assert not library.exists()  # nothing created for a request that names nothing real
    report = library.index(model, [tmp_path / "nowhere", photo_dir])
    assert report.missing_roots == [str(tmp_path / "nowhere")] and report.count == 12
    assert [r.path for r in library.roots()] == [str(photo_dir)]


def test_re_exporting_the_same_checkpoint_or_adding_a_precision_keeps_the_index(tiny_checkpoint, tmp_path, photo_dir):
    from edge_search.export.pipeline import export_bundle

    first = tmp_path / "first"
    export_bundle(model=str(tiny_checkpoint), out=first, precisions=("fp32",))
    library = Library(tmp_path / "index")
    library.index(Model.open(first, ModelOptions(device="cpu")), [photo_dir])
    again = tmp_path / "again"
    export_bundle(model=str(tiny_checkpoint), out=again, precisions=("fp32", "int8"))
    assert json.loads((again / "manifest.json").read_text())["created_at"]  # a new manifest, other bytes
    assert Bundle.load(again).identity == Bundle.load(first).identity
    hits = library.query(
        Model.open(again, ModelOptions(device="cpu", precision="int8")), images=[photo_dir / "img01.png"], k=1
    ).hits
    assert hits[0].path == str(photo_dir / "img01.png")


def test_failures_are_listed_with_their_reasons(model, library, photo_dir):
    (photo_dir / "broken.png").write_bytes(b"\x89PNG not really")
    library.index(model, [photo_dir])
    failures = library.failures()
    assert [f.path for f in failures] == [str(photo_dir / "broken.png")] and "not an image" in failures[0].reason


def test_images_larger_than_max_megapixels_are_skipped_but_a_drafted_jpeg_is_cheap(tiny_bundle, tmp_path):
    from PIL import Image

    model = Model.open(tiny_bundle, ModelOptions(device="cpu", max_megapixels=1))
    big_png, big_jpeg = tmp_path / "big.png", tmp_path / "big.jpg"
    Image.new("RGB", (1500, 1000), (10, 80, 200)).save(big_png)
    Image.new("RGB", (4000, 3000), (10, 80, 200)).save(big_jpeg)
    png, jpeg = model.embed_paths([big_png, big_jpeg])
    assert not png.ok and "1 megapixels" in png.error and "--max-megapixels" in png.error
    assert jpeg.ok


def test_embeddings_are_unit_vectors_from_paths_bytes_or_pil_images(model, photo_dir):
    from PIL import Image

    path = photo_dir / "img01.png"
    from_path = model.embed_image(path)
    with Image.open(path) as image:
        from_pil = model.embed_image(image.copy())
    assert np.linalg.norm(from_path) == pytest.approx(1.0, abs=1e-5)
    assert float(from_path @ model.embed_image(path.read_bytes())) == pytest.approx(1.0, abs=1e-6)
    assert float(from_path @ from_pil) == pytest.approx(1.0, abs=1e-6)


def test_a_stop_during_the_folder_walk_ends_the_run_and_prunes_nothing(model, library, photo_dir):
    import threading

    library.index(model, [photo_dir])
    stop = threading.Event()
    stop.set()  # as if Ctrl-C came while the walk was still listing folders
    report = library.index(model, [photo_dir], run=RunOptions(stop=stop))
    assert report.interrupted and (report.removed, report.added) == (0, 0)
    assert library.info().count == 12


def test_a_file_too_large_for_the_limit_is_retried_when_the_limit_is_raised(tiny_bundle, tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (1500, 1000), (10, 80, 200)).save(photos / "big.png")  # 1.5 MP
    with Library(tmp_path / "index") as library:
        small = library.index(Model.open(tiny_bundle, ModelOptions(device="cpu", max_megapixels=1)), [photos])
        assert len(small.failed) == 1 and "--max-megapixels" in small.failed[0][1]
        again = library.index(Model.open(tiny_bundle, ModelOptions(device="cpu", max_megapixels=1)), [photos])
        assert (again.unchanged, again.failed) == (1, [])  # same limit: not tried again
        raised = library.index(Model.open(tiny_bundle, ModelOptions(device="cpu", max_megapixels=2)), [photos])
        assert (raised.embedded, raised.failed, raised.count) == (1, [], 1)
        assert library.failures() == []


def test_removing_or_searching_under_a_path_the_index_does_not_hold_says_so(model, library, photo_dir, tmp_path):
    library.index(model, [photo_dir])
    with pytest.raises(UsageError, match="Nothing to remove.*Indexed folders: " + str(photo_dir)):
        library.remove([tmp_path / "nonexistent"])
    assert library.info().count == 12  # nothing was removed
    with pytest.raises(UsageError, match="not inside any indexed folder"):
        library.query(model, images=[photo_dir / "img01.png"], under_dir=tmp_path / "nonexistent")
    assert library.query(model, images=[photo_dir / "img01.png"], under_dir=tmp_path, k=1).hits  # above a root: fine


def test_removing_a_folder_inside_an_indexed_one_says_the_next_index_brings_it_back(model, library, photo_dir):
    library.index(model, [photo_dir])
    report = library.remove([photo_dir / "sub"])
    assert report.removed == 3 and len(report.notes) == 1
    assert "adds it back" in report.notes[0] and f"--exclude '{photo_dir / 'sub'}'" in report.notes[0]
    assert (
        library.index(model, [photo_dir], rules=RootRules(excludes=(str(photo_dir / "sub"),))).count == 9
    )  # the advice works
