"""Finding the moment, as a person does it, on trained weights (the DINOv2 fixture): a slideshow of six real photos
joined by fades is indexed by the installed command beside other photos; a query with any of the six photos answers
with that video at a time inside that photo's span, through `edge-search query` and through the service's API; a
moved video costs nothing; a truncated video and a text file named .mp4 are skipped with their reasons."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from served import Service

from conftest import CALIBRATION_PHOTOS, SLIDESHOW_PHOTOS, cli_env, make_slideshow, run_script

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers"

OTHERS = ("coins", "grass", "camera", "gravel", "hubble_deep_field")  # real photos that are not in the video


@pytest.fixture(scope="module")
def library(trained_bundles, tmp_path_factory):
    """(the CLI environment, the folder, the video's spans) after `edge-search index` of the folder."""
    root = tmp_path_factory.mktemp("videos")
    folder = root / "library"
    folder.mkdir()
    spans = make_slideshow(folder / "holiday.mp4")
    for name in OTHERS:
        shutil.copy(CALIBRATION_PHOTOS / f"{name}.jpg", folder / f"{name}.jpg")
    data = (folder / "holiday.mp4").read_bytes()
    (folder / "cut short.mp4").write_bytes(data[: len(data) // 2])
    (folder / "notes.mp4").write_text("a shopping list, not a video")
    env = cli_env(root, trained_bundles["dinov2"])
    indexed = run_script("edge-search", "index", str(folder), env=env)
    assert indexed.returncode == 4, indexed.stderr  # some files could not be read: the others were indexed
    assert f"failed: {folder / 'cut short.mp4'}: cannot read the video" in indexed.stderr
    assert f"failed: {folder / 'notes.mp4'}: cannot read the video" in indexed.stderr
    assert "video frames embedded" in indexed.stdout
    info = run_script("edge-search", "info", env=env).stdout  # a video counts once, as a video, not a photo
    assert re.search(rf"^files +{len(OTHERS)} photos · 1 video \(\d+ frames embedded\)", info, re.M), info
    dupes = run_script("edge-search", "dupes", env=env)
    assert f"among {len(OTHERS)} photos (videos are not compared)" in dupes.stderr
    return env, folder, spans


@pytest.mark.parametrize("photo", SLIDESHOW_PHOTOS)
def test_a_photo_of_the_video_finds_it_at_a_moment_inside_that_photos_span(library, photo):
    env, folder, spans = library
    span = next(s for s in spans if s.photo.stem == photo)
    found = run_script("edge-search", "query", str(CALIBRATION_PHOTOS / f"{photo}.jpg"), "-k", "3", "--json", env=env)
    assert found.returncode == 0, found.stderr
    first = json.loads(found.stdout)["results"][0]
    assert (first["path"], first["type"]) == (str(folder / "holiday.mp4"), "video")
    assert span.start <= first["at"] < span.end, (first, span)


def test_the_text_and_path_forms_name_the_video_at_its_moment(library):
    env, folder, _ = library
    query = str(CALIBRATION_PHOTOS / f"{SLIDESHOW_PHOTOS[0]}.jpg")
    found = run_script("edge-search", "query", query, "-k", "1", "--json", env=env)
    minutes, seconds = divmod(int(json.loads(found.stdout)["results"][0]["at"]), 60)
    text = run_script("edge-search", "query", query, "-k", "1", env=env)
    assert f"holiday.mp4 @ {minutes:02d}:{seconds:02d}" in text.stdout
    paths = run_script("edge-search", "query", query, "-k", "1", "-f", env=env)
    assert paths.stdout == f"{folder / 'holiday.mp4'}\n"


def test_the_service_answers_with_the_video_and_the_moment(library):
    env, folder, spans = library
    service = Service(env)
    try:
        service.wait_ready()
        for span in spans:
            status, body, _ = service.upload(span.photo.read_bytes(), k="3")
            assert status == 200
            first = body["results"][0]
            assert (first["path"], first["type"]) == (str(folder / "holiday.mp4"), "video")
            assert span.start <= first["at"] < span.end
        status, body, _ = service.upload(spans[0].photo.read_bytes(), k="10", type="photo")
        assert status == 200 and {hit["type"] for hit in body["results"]} == {"photo"}
    finally:
        service.stop()


def test_a_moved_video_is_not_embedded_again(library, tmp_path):
    env, folder, spans = library
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved / "library")  # a copy of the index's folder, moved elsewhere: indexed anew
    env = {**env, "EDGE_SEARCH_INDEX": str(tmp_path / "index")}
    first = json.loads(run_script("edge-search", "index", str(moved), "--json", env=env).stdout)
    assert first["frames"] >= 6
    (moved / "library" / "holiday.mp4").rename(moved / "holiday, renamed.mp4")
    again = run_script("edge-search", "index", str(moved), "--json", env=env)
    report = json.loads(again.stdout)
    assert (report["moved"], report["frames"], report["embedded"], report["removed"]) == (1, 0, 0, 0)
    found = run_script("edge-search", "query", str(spans[2].photo), "-k", "1", "--json", env=env)
    first_hit = json.loads(found.stdout)["results"][0]
    assert first_hit["path"] == str(moved / "holiday, renamed.mp4") and spans[2].start <= first_hit["at"] < spans[2].end
