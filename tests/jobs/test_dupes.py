"""`dupes`: groups that are safe to act on. Exact copies (same bytes) always form their own `exact` group; a `near`
group is a keeper (the original) and files that are the same picture *as that keeper* (at or above the threshold
and through the pixel check), one per content, so deleting every non-keeper always leaves a kept file with the same
picture, whatever chains the data holds and whatever the model confuses. Nothing is deleted by edge-search itself."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from old_catalogs import downgrade
from PIL import Image, ImageOps, PngImagePlugin

from conftest import cli_env, photo, run_script
from edge_search.runtime.errors import UsageError
from edge_search.runtime.jobs import dupes as dupes_job
from edge_search.runtime.jobs.dupes import FIRST_K
from edge_search.runtime.jobs.signatures import signature_of_file
from edge_search.runtime.library import Library
from edge_search.runtime.model.signature import Signature, compare
from edge_search.runtime.store.catalog import Catalog

ORIGINALS = 4


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


def stored(index_dir: Path) -> dict[str, tuple[str, np.ndarray, Signature | None]]:
    """path -> (sha256, float32 embedding, pixel signature), read from the catalog independently of the dupes code
    (a signature the catalog lacks is made from the file, as for an index from before signatures)."""
    with Catalog.open(index_dir, create=False) as catalog:
        rows = catalog.db.execute("SELECT path, sha256, embedding, signature FROM files WHERE status='ok'").fetchall()
    return {
        r[0].decode(): (
            r[1],
            np.frombuffer(r[2], dtype=np.float32),
            Signature.parse(r[3] if r[3] is not None else signature_of_file(r[0].decode())),
        )
        for r in rows
    }


def assert_safe_to_act_on(report, index_dir: Path) -> None:
    """The rule, checked on the report against the catalog's own hashes, embeddings and pixel signatures."""
    rows, threshold = stored(index_dir), report.threshold
    copies: dict[str, set[str]] = {}
    for path, (sha, _, _) in rows.items():
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
        _, keeper, keeper_pixels = rows[group.keep]
        assert group.files[0].path == group.keep
        for file, listed in zip(group.files, group.scores_to_keep):
            assert float(rows[file.path][1] @ keeper) >= threshold, f"{file.path} is below the threshold to its keeper"
            assert listed == pytest.approx(float(rows[file.path][1] @ keeper), abs=1e-6)
            assert file.path == group.keep or compare(keeper_pixels, rows[file.path][2]).same, file.path
        assert max(f.pixels for f in group.files) == group.files[0].pixels, "no member has more pixels than the keeper"
    # nothing that is the same picture is left out: of any two distinct contents that pass both, one is grouped
    grouped = {rows[p][0] for p in in_near}
    contents = {sha: rows[sorted(paths)[0]] for sha, paths in copies.items()}
    shas = sorted(contents)
    for i, a in enumerate(shas):
        for b in shas[i + 1 :]:
            if (
                float(contents[a][1] @ contents[b][1]) >= threshold + 1e-6
                and compare(contents[a][2], contents[b][2]).same
            ):
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


@pytest.mark.parametrize("scan", ["every pair", "nearest neighbours (large libraries)"])
def test_a_group_larger_than_the_first_neighbour_search_is_complete(library, variants, scan, monkeypatch):
    if scan != "every pair":  # the path a library above EXACT_DUPES_MAX takes: k widened while the k-th passes
        monkeypatch.setattr(dupes_job, "EXACT_DUPES_MAX", 0)
    with Catalog.open(library.directory, create=False) as catalog:
        rows = {p: v for keys, chunk in catalog.vectors() for p, v in zip(catalog.paths_for(keys).values(), chunk)}
    many = [v for p, v in rows.items() if Path(p).name.startswith("many-")]
    # every re-encoding links to every other (less a hair: the index compares its own rounding of the vectors)
    threshold = float(np.min(np.stack(many) @ np.stack(many).T)) - 1e-4
    report = library.dupes(threshold=threshold)
    group = next(g for g in report.groups if any(Path(f.path).name.startswith("many-") for f in g.files))
    assert sum(Path(f.path).name.startswith("many-") for f in group.files) == FIRST_K + 6


@pytest.mark.parametrize("threshold", [0.9999, 0.99999])
def test_the_keeper_has_the_most_pixels_then_is_the_oldest_and_is_listed_first(library, threshold):
    report = library.dupes(threshold=threshold)
    assert report.groups
    for group in report.groups:
        best = max((f.pixels, -f.timestamp) for f in group.files)
        assert group.files[0].path == group.keep and (group.files[0].pixels, -group.files[0].timestamp) == best
        assert group.scores_to_keep[0] == pytest.approx(1.0, abs=1e-5)
        assert len(group.pairs) == len(group.files) * (len(group.files) - 1) // 2


def planted_library(
    root: Path, tiny_bundle: Path, pictures: list[tuple[str, int | Image.Image | Path, np.ndarray]]
) -> Library:
    """An index whose embeddings are chosen, not computed: (file name, picture, direction). A picture given as a
    path is a file the caller wrote; one given as a side in pixels is one photo at that size (so the pixel check
    passes between any two of them and the embeddings decide); files of the same picture and direction are
    written as byte-identical copies."""
    from edge_search.runtime.files import sha256_file
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.store.generations import IndexWriter

    root.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.load(tiny_bundle)
    written: dict[tuple[bytes, bytes], Path] = {}
    rows = []
    for name, picture, direction in pictures:
        path = root / name
        vector = np.zeros(bundle.dim, dtype=np.float32)
        vector[: len(direction)] = direction
        vector /= np.linalg.norm(vector)
        if isinstance(picture, Path):  # written by the caller (its EXIF, its dates)
            stat = picture.stat()
            rows.append(
                (os.fsencode(picture), stat.st_size, stat.st_mtime_ns, sha256_file(picture), vector, None, None)
            )
            continue
        image = picture if isinstance(picture, Image.Image) else photo(7, 400, 300).resize((picture, picture * 3 // 4))
        same = written.setdefault((image.tobytes() + str(image.size).encode(), vector.tobytes()), path)
        if same != path:
            shutil.copyfile(same, path)
        elif path.suffix == ".png":
            info = PngImagePlugin.PngInfo()
            info.add_text("file", name)  # distinct bytes, the same pixels
            image.save(path, pnginfo=info)
        else:
            image.save(path, quality=95)
        stat = path.stat()
        rows.append((os.fsencode(path), stat.st_size, stat.st_mtime_ns, sha256_file(path), vector, None, None))
    with IndexWriter(root / "index", bundle, precision="fp32") as writer:
        writer.commit_results(rows)  # no signatures: dupes decodes the few it needs (as for an index from before)
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


def flat(colour, size=(200, 150), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def gradient(start, end, vertical=False, size=(200, 150)) -> Image.Image:
    """A smooth two-colour gradient: much alike to a model, nothing alike to a person."""
    steps = np.linspace(0.0, 1.0, size[1] if vertical else size[0])[:, None]
    line = (np.array(start) * (1 - steps) + np.array(end) * steps).astype(np.uint8)
    pixels = np.repeat(line[:, None, :], size[0], axis=1) if vertical else np.repeat(line[None, :, :], size[1], axis=0)
    return Image.fromarray(pixels, "RGB")


def blank_over_white(shape: str) -> Image.Image:
    """White drawing on a transparent background: blank on a white page, a different picture on any other."""
    pixels = np.zeros((150, 200, 4), dtype=np.uint8)
    pixels[..., :3] = 255
    if shape == "stripes":
        pixels[::10, :, 3] = 255
    else:
        yy, xx = np.mgrid[:150, :200]
        pixels[..., 3] = np.where((yy - 75) ** 2 + (xx - 100) ** 2 < 50**2, 255, 0)
    return Image.fromarray(pixels, "RGBA")


def test_pictures_with_little_content_group_only_with_pixel_identical_copies(tiny_bundle, tmp_path):
    """Flat colours, gradients and transparent images the model puts at cosine 1.0 to each other: only the flat
    red and its resized copy (the same pixels at another size) are one picture; the report says why the rest are
    not."""
    same = np.array([1.0, 0.0])
    library = planted_library(
        tmp_path,
        tiny_bundle,
        [
            ("red.png", flat((250, 0, 0)), same),
            ("red-resized.png", flat((250, 0, 0), size=(100, 75)), same),
            ("nearly-red.png", flat((235, 10, 0)), same),
            ("dark.png", flat((40, 40, 40)), same),
            ("red-to-blue.png", gradient((255, 0, 0), (0, 0, 255)), same),
            ("red-to-blue-down.png", gradient((255, 0, 0), (0, 0, 255), vertical=True), same),
            ("green-to-yellow.png", gradient((0, 160, 0), (255, 230, 0)), same),
            ("stripes.png", blank_over_white("stripes"), same),
            ("circle.png", blank_over_white("circle"), same),
        ],
    )
    report = library.dupes(threshold=0.95)
    assert [(g.kind, [Path(f.path).name for f in g.files]) for g in report.groups] == [
        ("near", ["red.png", "red-resized.png"])
    ]
    assert report.groups[0].pixels_to_keep[1].low_content
    assert any("pixels show different pictures" in note for note in report.notes)
    assert_safe_to_act_on(report, library.directory)


def camera_exif(taken: str) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 80D"
    exif.get_ifd(0x8769)[36867] = taken
    return exif


def test_the_camera_original_is_kept_not_a_mirrored_larger_resave_nor_a_copy_named_so(tiny_bundle, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    picture = photo(31, 640, 480)
    original = photos / "IMG_0412.jpg"
    picture.save(original, quality=85, exif=camera_exif("2021:07:14 18:02:11"))
    os.utime(original, (1_626_278_531, 1_626_278_531))
    mirrored = photos / "beach.jpg"  # mirrored, re-saved at quality 98: a larger file, no EXIF, made today
    ImageOps.mirror(picture).save(mirrored, quality=98)
    named_copy = photos / "IMG_0412 (1).jpg"  # the same EXIF and date as the original, re-encoded: only the name
    picture.save(named_copy, quality=95, exif=camera_exif("2021:07:14 18:02:11"))
    os.utime(named_copy, (1_626_278_531, 1_626_278_531))
    assert mirrored.stat().st_size > original.stat().st_size and named_copy.stat().st_size > original.stat().st_size
    library = planted_library(
        tmp_path,
        tiny_bundle,
        [(p.name, p, np.array([1.0, 0.01 * i])) for i, p in enumerate((mirrored, named_copy, original))],
    )
    report = library.dupes(threshold=0.99)
    assert [(g.kind, g.keep) for g in report.groups] == [("near", str(original))]
    checks = {Path(f.path).name: c for f, c in zip(report.groups[0].files, report.groups[0].pixels_to_keep)}
    assert checks["beach.jpg"].mirrored and not checks["IMG_0412 (1).jpg"].mirrored
    body = report.as_dict()["groups"][0]["files"]
    assert body[0]["camera"] and body[0]["taken"] == "2021-07-14 18:02:11" and body[0]["pixels_to_keep"] is None
    assert all(f["pixels_to_keep"]["same"] for f in body[1:])
    shown = run_script("edge-search", "dupes", "--threshold", "0.99", env=cli_env(tmp_path, tiny_bundle)).stdout
    assert "keep: its name is not a copy's" in shown  # what told it from its closest rival, the named copy
    lines = {Path(line.removesuffix("  (mirrored)").split("  ")[-1]).name: line for line in shown.splitlines()}
    assert lines["beach.jpg"].endswith("(mirrored)") and not lines["IMG_0412 (1).jpg"].endswith("(mirrored)")


def test_an_index_from_before_pixel_signatures_gets_them_from_the_next_index_without_reembedding(
    tmp_path, tiny_bundle, variants
):
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(variants), env=env).returncode == 0
    catalog_file = tmp_path / "index" / "catalog.sqlite"
    downgrade(catalog_file, 3)  # as edge-search left it before signatures
    with sqlite3.connect(catalog_file) as db:
        keys = dict(db.execute("SELECT path, id FROM files").fetchall())
    before = run_script("edge-search", "dupes", "--threshold", "0.9999", "--json", env=env)
    assert before.returncode == 0, before.stderr
    decoded_now = json.loads(before.stdout)["notes"]
    assert any("decoded for this report" in note for note in decoded_now)
    again = run_script("edge-search", "index", str(variants), "--json", env=env)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["embedded"], report["signed"], report["unchanged"]) == (0, len(keys), len(keys))
    with sqlite3.connect(catalog_file) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("7",)
        assert dict(db.execute("SELECT path, id FROM files").fetchall()) == keys  # the same rows, the same keys
        assert db.execute("SELECT count(*) FROM files WHERE signature IS NULL").fetchone() == (0,)
    after = run_script("edge-search", "dupes", "--threshold", "0.9999", "--json", env=env)
    assert json.loads(after.stdout)["groups"] == json.loads(before.stdout)["groups"]
    assert not any("decoded for this report" in note for note in json.loads(after.stdout)["notes"])
