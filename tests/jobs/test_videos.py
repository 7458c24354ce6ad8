"""Videos in the library: frames are sampled where the picture changes and stored with their time; a video is one
result at its best moment; a moved video is not decoded again; broken ones are skipped with their reason; dupes
never groups frames; the service sends a video by byte ranges and shows a frame's stored picture."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from conftest import CALIBRATION_PHOTOS, make_slideshow
from edge_search.runtime.errors import ImageDecodeError, UsageError
from edge_search.runtime.jobs.videos import DEFAULT_RULE
from edge_search.runtime.library import Library
from edge_search.runtime.model.video import SamplingRule, VideoReader, format_time
from edge_search.runtime.serve.app import ServiceConfig, make_app
from edge_search.runtime.store.catalog import FRAME_KEYS, Catalog, is_frame_key


@pytest.fixture(scope="module")
def slideshow(tmp_path_factory):
    """(the video, the spans of its six photos)."""
    out = tmp_path_factory.mktemp("video") / "holiday.mp4"
    return out, make_slideshow(out)


@pytest.fixture
def library_folder(tmp_path, slideshow):
    """A folder with the slideshow and three other real photos."""
    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copy(slideshow[0], folder / "holiday.mp4")
    for name in ("coins", "grass", "camera"):
        shutil.copy(CALIBRATION_PHOTOS / f"{name}.jpg", folder / f"{name}.jpg")
    return folder


def kept_times(video, rule: SamplingRule = DEFAULT_RULE) -> list[float]:
    with VideoReader(video, max_pixels=10**8, shortest_side=64) as reader:
        return [frame.at for frame in reader.frames(rule)]


def test_a_frame_is_kept_for_each_photo_of_a_slideshow_and_few_more(slideshow):
    video, spans = slideshow
    times = kept_times(video)
    for span in spans:
        inside = [t for t in times if span.start <= t < span.end]
        assert 1 <= len(inside) <= 2, (span, times)  # every scene, without a frame per quarter second


def test_without_any_change_a_frame_is_kept_every_max_gap(slideshow):
    times = kept_times(slideshow[0], SamplingRule(change=2.0, max_gap_s=4.0))  # changes never count
    gaps = np.diff(times)  # B-frames are not decoded: the next frame may come a few tenths later
    assert times[0] == 0.0 and len(times) == 5 and all(4.0 <= gap < 4.5 for gap in gaps), times


def test_a_stream_declaring_too_many_pixels_is_refused_before_decoding(slideshow):
    with pytest.raises(ImageDecodeError, match="320×240 pixels, more than the limit"):
        VideoReader(slideshow[0], max_pixels=320 * 240 - 1, shortest_side=64)


def test_moments_read_as_minutes_and_seconds():
    assert [format_time(t) for t in (0, 83.4, 3723)] == ["00:00", "01:23", "1:02:03"]


def test_a_video_is_one_result_at_its_best_moment_and_type_filters(tmp_path, model, library_folder, slideshow):
    library = Library(tmp_path / "index")
    report = library.index(model, [library_folder])
    with Catalog.open(tmp_path / "index", create=False) as catalog:
        videos, frames = catalog.count_videos()
        frame_keys = sorted(k for k in catalog.ok_ids() if is_frame_key(k))
    assert (report.added, report.frames, videos, frames) == (4, frames, 1, len(frame_keys)) and frames >= 6
    assert (library.info().videos, library.info().frames, library.info().count) == (1, frames, 4)
    spans = slideshow[1]
    third = frame_keys[2]
    found = library.query(key=third, k=4)
    videos_found = [hit for hit in found.hits if hit.path.endswith("holiday.mp4")]
    assert len(videos_found) == 1 and len(found.hits) == 4  # the video once, then the three photos
    best = videos_found[0]
    assert best.rank == 1 and best.key == third and best.kind == "video"
    assert spans[2].start <= best.at < spans[2].end
    assert best.moments[0] == (best.at, best.score)
    assert best.as_dict()["at"] == round(best.at, 3) and best.as_dict()["type"] == "video"
    photos_only = library.query(key=third, k=10, kind="photo")
    assert [hit.kind for hit in photos_only.hits] == ["photo"] * 3
    videos_only = library.query(key=third, k=10, kind="video")
    assert [hit.path for hit in videos_only.hits] == [str(library_folder / "holiday.mp4")]
    with pytest.raises(UsageError, match="photo or video"):
        library.query(key=third, kind="movie")
    assert library.frame_pictures(found.hits)[third][:2] == b"\xff\xd8"  # the frame's JPEG, for montages
    library.close()


def test_a_moved_video_is_not_decoded_again_and_keeps_its_times(tmp_path, model, library_folder):
    library = Library(tmp_path / "index")
    library.index(model, [library_folder])
    with Catalog.open(tmp_path / "index", create=False) as catalog:
        before = sorted(at for _, (_, at) in catalog.frames_of(catalog.ok_ids()).items())
    (library_folder / "trips").mkdir()
    (library_folder / "holiday.mp4").rename(library_folder / "trips" / "renamed.mp4")
    report = library.index(model)
    assert (report.moved, report.frames, report.embedded, report.removed) == (1, 0, 0, 0)
    with Catalog.open(tmp_path / "index", create=False) as catalog:
        frames = catalog.frames_of(catalog.ok_ids())
        assert sorted(at for _, at in frames.values()) == before
        assert set(catalog.paths_for(frames).values()) == {str(library_folder / "trips" / "renamed.mp4")}
    library.close()


def test_broken_and_hostile_videos_are_skipped_with_their_reasons(tmp_path, model, library_folder, slideshow):
    data = slideshow[0].read_bytes()
    (library_folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (library_folder / "notes.mp4").write_text("not a video at all")
    os.mkfifo(library_folder / "pipe.mp4")  # would block a reader for ever
    (library_folder / "outside.mov").symlink_to(tmp_path / "elsewhere.mov")
    (tmp_path / "elsewhere.mov").write_bytes(data)
    library = Library(tmp_path / "index")
    report = library.index(model, [library_folder])
    problems = dict(report.problems)
    assert problems[str(library_folder / "pipe.mp4")] == "not a regular file: a named pipe (FIFO)"
    assert problems[str(library_folder / "outside.mov")].startswith("symlink to ")
    reasons = dict(report.failed)
    assert set(reasons) == {str(library_folder / "truncated.mp4"), str(library_folder / "notes.mp4")}
    assert all(reason.startswith("cannot read the video") for reason in reasons.values()), reasons
    assert report.added == 4  # the good video and the photos
    library.close()


def test_dupes_never_groups_frames_nor_a_photo_with_a_frame(tmp_path, model, library_folder):
    shutil.copy(CALIBRATION_PHOTOS / "astronaut.jpg", library_folder / "astronaut.jpg")  # also the video's 1st scene
    library = Library(tmp_path / "index")
    library.index(model, [library_folder])
    report = library.dupes(threshold=0.5)
    grouped = {path for group in report.groups for path in group.paths}
    assert not any(path.endswith(".mp4") for path in grouped)
    assert report.files == 4  # the photos alone are compared
    library.close()


def test_the_service_sends_a_video_by_byte_ranges_and_a_frame_as_its_picture(tmp_path, model, library_folder):
    library = Library(tmp_path / "index")
    library.index(model, [library_folder])
    with Catalog.open(tmp_path / "index", create=False) as catalog:
        frame = min(k for k in catalog.ok_ids() if is_frame_key(k))
    video = (library_folder / "holiday.mp4").read_bytes()
    api = TestClient(make_app(library, model, ServiceConfig()), base_url="http://localhost")
    whole = api.get(f"/api/image/{frame}")
    assert whole.status_code == 200 and whole.content == video
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    part = api.get(f"/api/image/{frame}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == video[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(video)}"
    tail = api.get(f"/api/image/{frame}", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == video[-10:]
    outside = api.get(f"/api/image/{frame}", headers={"Range": f"bytes={len(video)}-"})
    assert outside.status_code == 416
    thumb = api.get(f"/api/thumb/{frame}")
    picture = Image.open(io.BytesIO(thumb.content))  # the frame as decoded for the model (this one's input is tiny)
    assert (
        thumb.status_code == 200
        and picture.format == "JPEG"
        and picture.width / picture.height == pytest.approx(4 / 3, abs=0.05)
    )
    latest = api.get("/api/latest").json()["results"]
    assert {item["type"] for item in latest} == {"photo", "video"}
    assert [item["id"] for item in latest if item["type"] == "video"] == [frame]  # its first frame stands for it
    assert api.get(f"/api/image/{FRAME_KEYS + 10**6}").status_code == 404  # no such frame
    answer = api.post(
        "/api/query",
        files={"image": ("q.jpg", (CALIBRATION_PHOTOS / "coins.jpg").read_bytes())},
        data={"type": "video"},
    ).json()["results"]
    assert [hit["type"] for hit in answer] == ["video"] and np.isfinite(answer[0]["at"])
    assert api.post("/api/query", files={"image": ("q.jpg", b"x")}, data={"type": "movie"}).status_code == 400
    api.close()
    library.close()
