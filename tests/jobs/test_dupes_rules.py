"""The parts of `dupes` a keeper choice and a report rest on, specified without a model: what is read of a file
(camera, orientation, dates), which pairs the block-wise scan finds, how refused pairs are counted, and what the
JSON report holds.

Written from the survivors of a mutation run over `runtime/jobs/dupes.py` (CONTRIBUTING.md: "Tests that can
fail"): each test here fails on a mutant the older tests let through."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import photo
from edge_search.runtime.jobs import dupes
from edge_search.runtime.model.signature import signature_of
from edge_search.runtime.store import vector_index as vi
from edge_search.runtime.store.catalog import Catalog, encode_path

MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112


def saved(path: Path, tags: dict[int, object] | None = None, size=(60, 40)) -> tuple:
    """A JPEG with these EXIF tags, as the catalog's (key, path, size, mtime_ns, sha256) row describes it."""
    exif = Image.Exif()
    for tag, value in (tags or {}).items():
        exif[tag] = value
    photo(7, *size).save(path, exif=exif.tobytes())
    os.utime(path, ns=(0, 1_700_000_000 * 10**9))
    return (1, str(path), path.stat().st_size, path.stat().st_mtime_ns, "sha")


@pytest.mark.parametrize("tags", [{MAKE: "Fujifilm"}, {MODEL: "X-T5"}], ids=["make only", "model only"])
def test_a_file_naming_its_camera_by_make_or_model_is_a_camera_original(tmp_path, tags):
    described = dupes._describe(saved(tmp_path / "a.jpg", tags))
    assert described.camera and described.exif_tags == 1


def test_a_file_without_exif_is_no_camera_original_and_dates_from_its_modification(tmp_path):
    described = dupes._describe(saved(tmp_path / "a.jpg"))
    assert (described.camera, described.exif_tags, described.taken) == (False, 0, None)
    assert described.modified == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_700_000_000))
    assert described.timestamp == 1_700_000_000


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_picture_shown_turned_a_quarter_counts_its_upright_size(tmp_path, orientation):
    described = dupes._describe(saved(tmp_path / "a.jpg", {ORIENTATION: orientation}, size=(60, 40)))
    upright = (40, 60) if orientation in (5, 6, 7, 8) else (60, 40)
    assert (described.width, described.height) == upright and described.pixels == 2400


def test_the_block_scan_finds_every_pair_once_whatever_the_block_size():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(9, 8)).astype(np.float32)
    vectors[4] = vectors[1] + 0.01
    vectors[8] = vectors[1] - 0.01
    vectors[7] = vectors[2] + 0.01
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = {(1, 4), (1, 8), (4, 8), (2, 7)}
    for rows in (1, 2, 4, 512):
        assert dupes._pairs_by_scan(vectors, 0.99, rows=rows) == expected


def test_pairs_whose_pixels_differ_are_each_counted_and_none_is_grouped(tmp_path):
    """Three different pictures given the same embedding (as a weak model might): three refused pairs."""
    with Catalog.open(tmp_path / "index", create=True) as catalog:
        rows = []
        for seed in range(3):
            path = tmp_path / f"{seed}.png"
            picture = photo(100 + seed, 64, 48)
            picture.save(path)
            vector = np.ones(4, dtype=np.float32) / 2
            rows.append((encode_path(path), seed, seed, f"sha{seed}", vector, None, signature_of(picture, 64 / 48)))
        catalog.upsert_results(rows)
        index = vi.IndexSettings(dim=4).new_index()
        report = dupes.find_duplicates(catalog, index, 0.9)
    assert (report.groups, report.pixels_refused, report.threshold_source) == ([], 3, "option")
    assert report.notes[0].startswith("3 pair(s) above the threshold were not grouped")


def test_the_json_report_counts_redundant_files_and_describes_each(tmp_path):
    first = dupes._describe(saved(tmp_path / "a.jpg", {MAKE: "Canon"}))
    second = dupes._describe(saved(tmp_path / "b.jpg"))
    groups = [dupes._group("exact", [first, second], None), dupes._group("exact", [first, second, second], None)]
    report = dupes.DupesReport(groups, 0.9, "bundle", 5, 0.5)
    data = report.as_dict()
    assert report.redundant_files == data["redundant_files"] == 3
    assert (data["threshold_source"], data["pixels_refused"], data["random_weights"]) == ("bundle", 0, False)
    described = data["groups"][0]["files"][0]
    assert (described["width"], described["height"], described["camera"], described["score_to_keep"]) == (
        60,
        40,
        True,
        1.0,
    )
    assert data["groups"][1]["pairs"][0] == {"a": 0, "b": 1, "score": 1.0}


def test_the_keeper_is_explained_by_the_rule_that_chose_it():
    """The caption says which rule decided, per group, not a fixed string: a larger copy made later is kept for
    its pixels (it is not the oldest); among the same pixels, the oldest; then camera EXIF; then the name."""
    from edge_search.runtime.jobs.dupes import DupeFile, why_kept

    def copy(path, width, taken, stamp, camera=False):
        return DupeFile(0, path, 1000, "2024-01-01 00:00:00", None, width, width * 3 // 4, 0, taken, camera, stamp)

    big_new = copy("/p/IMG_1.jpg", 4000, "2023-05-01 10:00:00", 1.68e9)
    small_old = copy("/p/IMG_1 small.jpg", 2000, "2018-06-01 09:00:00", 1.53e9)
    assert why_kept([big_new, small_old]) == "the most pixels (4000x3000)"
    old_twin = copy("/p/a.jpg", 2000, "2018-06-01 09:00:00", 1.53e9)
    assert why_kept([old_twin, copy("/p/b.jpg", 2000, None, 1.7e9)]) == "the oldest (2018-06-01 09:00:00)"
    with_camera = copy("/p/c.jpg", 2000, None, 1.7e9, camera=True)
    assert why_kept([with_camera, copy("/p/d.jpg", 2000, None, 1.7e9)]) == "its EXIF names a camera"
    assert why_kept([copy("/p/e.jpg", 2000, None, 1.7e9), copy("/p/e (1).jpg", 2000, None, 1.7e9)]) == (
        "its name is not a copy's"
    )
