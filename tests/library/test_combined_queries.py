"""Queries as people ask them: photos and words together, each weighted, some to be unlike, and a date range.

The rule (rclip's, the same in the CLI, the library and the HTTP API): the weighted sum of the terms' unit
embeddings, re-normalised. The indexes here are planted: their embeddings are chosen from the query photos' own,
so the order the rule must give is known in advance.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli_env, photo, run_script
from edge_search.runtime.errors import UsageError
from edge_search.runtime.jobs.combined_query import Term, terms_from, weighted
from edge_search.runtime.jobs.dates import DateRange, exif_taken, naive_seconds
from edge_search.runtime.library import Library
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.store.generations import IndexWriter


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def plant(
    index: Path, bundle: Path, folder: Path, vectors: dict[str, np.ndarray], taken: dict[str, float] | None = None
):
    """An index of files named after `vectors`' keys, holding exactly those embeddings (and dates, if given)."""
    folder.mkdir(parents=True, exist_ok=True)
    loaded = Bundle.load(bundle)
    rows = []
    for i, (name, vector) in enumerate(vectors.items()):
        path = folder / name
        photo(1000 + i, 32, 24).save(path)
        stat = path.stat()
        padded = np.zeros(loaded.dim, dtype=np.float32)
        padded[: len(vector)] = vector
        rows.append((os.fsencode(path), stat.st_size, stat.st_mtime_ns, f"{i:064x}", unit(padded), None, None))
    with IndexWriter(index, loaded, precision="fp32") as writer:
        writer.commit_results(rows)
        if taken is not None:
            ids = {os.fsdecode(path): key for key, path in writer.catalog.db.execute("SELECT id, path FROM files")}
            writer.set_taken([(ids[str(folder / name)], seconds, "exif") for name, seconds in taken.items()])
        writer.publish()
    return Library(index)


def names(result) -> list[str]:
    return [Path(hit.path).name for hit in result.hits]


@pytest.fixture(scope="module")
def query_photos(tmp_path_factory, model):
    """Two query photos and their embeddings under the tiny model."""
    folder = tmp_path_factory.mktemp("query-photos")
    a, b = folder / "a.png", folder / "b.png"
    photo(11, 96, 72).save(a)
    photo(12, 96, 72).save(b)
    return a, b, model.embed_image(a), model.embed_image(b)


def test_weights_move_the_query_towards_the_heavier_photo_as_the_rule_says(tmp_path, tiny_bundle, model, query_photos):
    a, b, ea, eb = query_photos
    planted = {"mid.png": ea + eb, "two-a.png": 2 * ea + eb, "two-b.png": ea + 2 * eb, "a.png": ea, "b.png": eb}
    library = plant(tmp_path / "index", tiny_bundle, tmp_path / "lib", planted)
    even = library.query(model, terms=[Term(image=a), Term(image=b)], k=5)
    assert names(even)[0] == "mid.png" and even.hits[0].score == pytest.approx(1.0, abs=1e-5)
    heavier_a = library.query(model, terms=[Term(image=a, weight=2), Term(image=b)], k=5)
    assert names(heavier_a)[0] == "two-a.png" and heavier_a.hits[0].score == pytest.approx(1.0, abs=1e-5)
    rule = unit(2 * ea + eb)
    expected = sorted(planted, key=lambda name: -float(unit(planted[name]) @ rule))
    assert names(heavier_a) == expected


def test_a_negative_photo_pushes_the_results_away_from_it(tmp_path, tiny_bundle, model, query_photos):
    a, b, ea, eb = query_photos
    planted = {"a.png": ea, "a-not-b.png": ea - eb, "mid.png": ea + eb, "b.png": eb}
    library = plant(tmp_path / "index", tiny_bundle, tmp_path / "lib", planted)
    plain = library.query(model, terms=[Term(image=a)], k=4)
    assert names(plain)[0] == "a.png"
    unlike_b = library.query(model, terms=[Term(image=a), Term(image=b, weight=-1)], k=4)
    assert names(unlike_b)[0] == "a-not-b.png" and unlike_b.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert names(unlike_b)[-1] == "b.png"


def test_photos_and_words_combine_by_the_same_rule(tmp_path, tiny_clip_bundle):
    from edge_search.runtime.library import Model
    from edge_search.runtime.options import ModelOptions

    clip = Model.open(tiny_clip_bundle, ModelOptions(device="cpu", precision="fp32"))
    query_photo = tmp_path / "q.png"
    photo(21, 64, 48).save(query_photo)
    image, dog, beach = clip.embed_image(query_photo), clip.embed_text("dog"), clip.embed_text("beach")
    planted = {"rule.png": image + 0.5 * dog - beach, "image.png": image, "dog.png": dog, "beach.png": beach}
    library = plant(tmp_path / "index", tiny_clip_bundle, tmp_path / "lib", planted)
    terms = terms_from(images=[str(query_photo)], texts=["0.5:dog"], unlike_texts=["beach"])
    assert [(t.text, t.weight) for t in terms] == [(None, 1.0), ("dog", 0.5), ("beach", -1.0)]
    result = library.query(clip, terms=terms, k=4)
    assert names(result)[0] == "rule.png" and result.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert names(result)[-1] == "beach.png"


def test_a_weight_is_read_only_from_a_number_and_a_colon_and_never_from_an_existing_file_name(tmp_path):
    assert weighted("2:golden retriever") == (2.0, "golden retriever")
    assert weighted("0.5:beach.jpg") == (0.5, "beach.jpg")
    assert weighted("C:/photos/a.jpg") == (1.0, "C:/photos/a.jpg")
    odd = tmp_path / "3:10 to Yuma.jpg"
    odd.write_bytes(b"")
    assert weighted(str(odd)) == (1.0, str(odd))


def test_a_query_only_of_things_to_be_unlike_or_that_cancels_out_is_refused(tmp_path, tiny_bundle, model, query_photos):
    a, b, ea, _ = query_photos
    library = plant(tmp_path / "index", tiny_bundle, tmp_path / "lib", {"a.png": ea})
    with pytest.raises(UsageError, match="to look like"):
        library.query(model, terms=[Term(image=b, weight=-1)])
    with pytest.raises(UsageError, match="cancel"):
        library.query(model, terms=[Term(image=a), Term(image=a, weight=-1)])


# ------------------------------------------------------------------------------------------------ dates
def day(text: str) -> float:
    return naive_seconds(datetime.fromisoformat(text))


@pytest.mark.parametrize("share", ["few", "most"])  # searched exactly / through the graph (EXACT_BELOW_SHARE)
def test_a_date_range_searches_among_its_photos_alone_and_gives_k_when_k_exist(tmp_path, tiny_bundle, share):
    rng = np.random.default_rng(5)
    count, inside = 240, (12 if share == "few" else 200)
    vectors = {f"p{i:03d}.png": rng.normal(size=16) for i in range(count)}
    taken = {name: day("2021-06-15") if i < inside else day("2019-01-01") for i, name in enumerate(vectors)}
    library = plant(tmp_path / "index", tiny_bundle, tmp_path / "lib", vectors, taken)
    dim = Bundle.load(tiny_bundle).dim
    far = np.zeros(dim, dtype=np.float32)
    far[:16] = vectors["p239.png"]  # the nearest photo of all is outside the range
    in_2021 = DateRange.asked("2021", "2022")
    result = library.query(vector=far, k=10, dates=in_2021)
    assert len(result.hits) == 10
    assert all(int(name[1:4]) < inside for name in names(result))
    assert all(hit.taken == "2021-06-15 00:00" for hit in result.hits)
    everything = library.query(vector=far, k=count, dates=in_2021)
    assert sorted(names(everything)) == sorted(list(vectors)[:inside])  # exactly the photos in range
    scores = [hit.score for hit in everything.hits]
    assert scores == sorted(scores, reverse=True)


def test_dates_are_read_as_a_person_writes_them():
    assert DateRange.asked("2024", None) == DateRange(day("2024-01-01"), None)
    assert DateRange.asked("2024-06", "2024-09") == DateRange(day("2024-06-01"), day("2024-09-01"))
    assert DateRange.asked(None, "2024-06-15").holds(day("2024-06-14T23:59:59"))
    assert not DateRange.asked(None, "2024-06-15").holds(day("2024-06-15"))
    for bad in ("June", "2024-13", "2024-02-30", "24"):
        with pytest.raises(UsageError):
            DateRange.asked(bad, None)
    with pytest.raises(UsageError, match="not later"):
        DateRange.asked("2024", "2023")


def with_exif_date(path: Path, when: str, seed: int) -> Path:
    image = photo(seed, 80, 60)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = when
    image.save(path, exif=exif)
    return path


def test_the_date_taken_is_exif_date_time_original_else_the_file_modification_time(tmp_path):
    dated = with_exif_date(tmp_path / "camera.jpg", "2019:07:04 18:30:00", 1)
    assert exif_taken(dated) == day("2019-07-04T18:30:00")
    plain = tmp_path / "plain.png"
    photo(2, 40, 30).save(plain)
    assert exif_taken(plain) is None
    never_set = with_exif_date(tmp_path / "unset.jpg", "0000:00:00 00:00:00", 3)
    assert exif_taken(never_set) is None


@pytest.mark.slow  # the installed CLI in subprocesses
def test_query_and_dupes_filter_by_date_through_the_cli(tmp_path, tiny_bundle):
    photos = tmp_path / "photos"
    photos.mkdir()
    expected = set()
    for i, when in enumerate(
        ["2020:01:05 10:00:00", "2021:03:10 10:00:00", "2021:04:20 10:00:00", "2022:08:01 10:00:00"]
    ):
        path = with_exif_date(photos / f"camera{i}.jpg", when, 40 + i)
        if when.startswith("2021"):
            expected.add(path)
    old = photos / "scan.png"  # no EXIF: its modification time, March 2021, counts
    photo(50, 80, 60).save(old)
    moment = datetime(2021, 3, 30, 12, 0).timestamp()
    os.utime(old, (moment, moment))
    expected.add(old)
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photos), env=env).returncode == 0
    query = [str(photos / "camera0.jpg"), "-k", "10", "--json"]
    found = run_script("edge-search", "query", *query, "--after", "2021", "--before", "2022", env=env)
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert {Path(hit["path"]) for hit in answer["results"]} == expected
    assert {hit["taken"] for hit in answer["results"]} == {"2021-03-10 10:00", "2021-04-20 10:00", "2021-03-30 12:00"}
    two = run_script("edge-search", "query", *query, "-k", "2", "--after", "2021-03", "--before", "2021-05", env=env)
    assert len(json.loads(two.stdout)["results"]) == 2
    bad = run_script("edge-search", "query", str(photos / "camera0.jpg"), "--after", "last spring", env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    dupes = run_script("edge-search", "dupes", "--after", "2023", "--json", env=env)
    assert dupes.returncode == 0 and json.loads(dupes.stdout)["groups"] == []


@pytest.mark.slow  # the installed CLI in subprocesses
def test_words_on_a_bundle_without_a_text_tower_are_one_line_and_exit_2(tmp_path, tiny_bundle, photo_dir):
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    for words in (["--text", "a dog"], [str(photo_dir / "img02.webp"), "--unlike-text", "people"]):
        answer = run_script("edge-search", "query", *words, env=env)
        assert answer.returncode == 2, answer.stderr
        lines = answer.stderr.strip().splitlines()
        assert len(lines) == 1 and "CLIP bundle" in lines[0], lines


@pytest.mark.slow  # the installed CLI in subprocesses
def test_the_cli_combines_weighted_and_negative_photos_by_the_librarys_rule(tmp_path, tiny_bundle, photo_dir, model):
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    a, b = photo_dir / "img02.webp", photo_dir / "img01.png"
    asked = [f"3:{a}", "--unlike", str(b), "-k", "12", "--json", "--device", "cpu", "--precision", "fp32"]
    answer = run_script("edge-search", "query", *asked, env=env)
    assert answer.returncode == 0, answer.stderr
    cli = [(hit["path"], hit["score"]) for hit in json.loads(answer.stdout)["results"]]
    library = Library(tmp_path / "index").query(model, terms=[Term(image=a, weight=3), Term(image=b, weight=-1)], k=12)
    assert [path for path, _ in cli] == [hit.path for hit in library.hits]
    assert [score for _, score in cli] == pytest.approx([hit.score for hit in library.hits], abs=1e-5)
