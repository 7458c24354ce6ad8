"""What the commands print reads plainly: the bundle named as a bundle, sizes in units, one date format, no
advice about options nobody gave."""

from __future__ import annotations

import json
import os
import re
import shutil

from conftest import cli_env, run_script


def test_info_index_dupes_and_verify_say_what_they_mean(tmp_path, tiny_bundle, photo_dir):
    env = cli_env(tmp_path, tiny_bundle)
    shutil.copyfile(photo_dir / "img01.png", photo_dir / "img01-copy.png")
    indexed = run_script("edge-search", "index", str(photo_dir), env=env)
    assert f"with the bundle at {tiny_bundle}" in indexed.stderr
    info = run_script("edge-search", "info", env=env).stdout
    assert re.search(r"^bundle +" + re.escape(str(tiny_bundle)), info, re.M)
    assert re.search(r"^size on disk +\d+(\.\d)? (B|KB|MB|GB)$", info, re.M) and "size_bytes" not in info
    dupes = run_script("edge-search", "dupes", "--threshold", "0.99999", env=env).stdout
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", dupes) and "0.00 MB" not in dupes
    assert re.search(r"\d+(\.\d)? (B|KB|MB)", dupes)
    verify = run_script("edge-search", "verify", env=env)
    assert "--device cuda was requested" not in verify.stdout + verify.stderr
    rows = [line for line in verify.stdout.splitlines() if line[:4] in ("ok  ", "FAIL", "info")]
    starts = {re.match(r"^.{4} (.*?\S) {2,}(\S)", line).start(2) for line in rows}
    assert len(rows) > 5 and len(starts) == 1  # the details in one column, however long the names
    empty = run_script("edge-search", "query", str(photo_dir / "img01.png"), "--after", "2090", env=env)
    assert empty.returncode == 0 and "--after / --before" in empty.stdout


def test_a_folder_that_does_not_exist_is_one_line_before_anything_is_loaded(tmp_path, tiny_bundle):
    env = cli_env(tmp_path, tiny_bundle)
    missing = run_script("edge-search", "index", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "Nothing to index" in missing.stderr and "Indexing into" not in missing.stderr


def test_a_folder_given_as_the_query_image_is_a_usage_error_that_names_under(tmp_path, tiny_bundle, photo_dir):
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    folder = run_script("edge-search", "query", str(photo_dir), env=env)
    assert folder.returncode == 2 and "is a folder" in folder.stderr and "--under" in folder.stderr


def test_embed_uses_the_bundle_the_index_recorded(tmp_path, tiny_clip_bundle, photo_dir):
    """With EDGE_SEARCH_INDEX (or --index) on an index of another model, `embed` embeds as that index does."""
    env = cli_env(tmp_path, tiny_clip_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    del env["EDGE_SEARCH_MODEL"]  # no bundle named: the index's own
    embedded = run_script("edge-search", "embed", str(photo_dir / "img01.png"), "--json", env=env)
    assert embedded.returncode == 0, embedded.stderr
    assert len(json.loads(embedded.stdout.splitlines()[0])["embedding"]) == 24  # the CLIP bundle's width
    elsewhere = dict(env, EDGE_SEARCH_INDEX=str(tmp_path / "other"))
    other = run_script("edge-search", "embed", str(photo_dir / "img01.png"), "--index", str(tmp_path / "index"),
                       "--json", env=elsewhere)  # fmt: skip
    assert other.returncode == 0 and len(json.loads(other.stdout.splitlines()[0])["embedding"]) == 24


def test_a_known_failure_that_did_not_change_is_not_news(tmp_path, tiny_bundle, photo_dir):
    """Under cron: the first run names the broken file (exit 4); later runs publish nothing new and exit 0 with a
    one-line reminder, even though the memory-derived decoding limit moves from run to run."""
    env = cli_env(tmp_path, tiny_bundle)
    (photo_dir / "broken.jpg").write_bytes(b"not a picture")
    first = run_script("edge-search", "index", str(photo_dir), "--json", env=env)
    assert first.returncode == 4 and json.loads(first.stdout)["failed"][0]["path"].endswith("broken.jpg")
    for _ in range(2):
        again = run_script("edge-search", "index", str(photo_dir), env=env)
        assert again.returncode == 0, again.stderr
        assert "1 unchanged file(s) could not be read before" in again.stderr and "failed 0" in again.stdout
    report = json.loads(run_script("edge-search", "index", "--json", env=env).stdout)
    assert (report["generation"], report["known_failures"], report["failed"]) == (
        json.loads(first.stdout)["generation"], 1, [],
    )  # fmt: skip
    listed = run_script("edge-search", "info", "--failed", env=env)
    assert "broken.jpg" in listed.stdout


def test_a_checkpoint_or_a_photo_folder_given_as_the_model_gets_advice_that_cannot_destroy_it(
    tmp_path, tiny_bundle, tiny_checkpoint, photo_dir
):
    """Only an empty or missing folder is offered as export-model's --out (which would replace anything else)."""
    env = cli_env(tmp_path, tiny_bundle)
    photo = str(photo_dir / "img01.png")
    checkpoint = run_script("edge-search", "embed", photo, "--model", str(tiny_checkpoint), env=env)
    assert "is a Hugging Face checkpoint, not a model bundle" in checkpoint.stderr
    assert f"--model {tiny_checkpoint} --out NEW_FOLDER" in " ".join(checkpoint.stderr.split())
    assert f"--out {tiny_checkpoint}`" not in checkpoint.stderr
    pictures = run_script("edge-search", "embed", photo, "--model", str(photo_dir), env=env)
    assert "holds other files" in pictures.stderr and "--out" not in pictures.stderr
    missing = run_script("edge-search", "embed", photo, "--model", str(tmp_path / "new-bundle"), env=env)
    assert f"export-model --out {tmp_path / 'new-bundle'}" in " ".join(missing.stderr.split())
    for result in (checkpoint, pictures, missing):
        assert result.returncode == 3 and "Traceback" not in result.stderr


def test_a_run_that_skipped_files_counts_them_and_why_in_its_summary(tmp_path, tiny_bundle, photo_dir):
    """A folder of symlinks to photos elsewhere indexes nothing: the summary line says so, and what to do."""
    links = tmp_path / "links"
    links.mkdir()
    for image in sorted(photo_dir.glob("img0[1-3].*")):
        (links / image.name).symlink_to(image)
    env = cli_env(tmp_path, tiny_bundle)
    result = run_script("edge-search", "index", str(links), env=env)
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert "0 files indexed" in summary and "skipped 3 (3 symlink(s) leading out" in summary
    assert "--follow-links includes them" in summary


def test_a_second_indexer_is_refused_before_it_announces_anything(tmp_path, tiny_bundle, photo_dir):
    from edge_search.runtime.model.bundle import Bundle
    from edge_search.runtime.store.generations import IndexWriter

    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    with IndexWriter(tmp_path / "index", Bundle.load(tiny_bundle), precision="fp32"):  # the first indexer
        second = run_script("edge-search", "index", str(photo_dir), env=env)
    assert second.returncode != 0 and "Indexing into" not in second.stderr
    assert "Traceback" not in second.stderr and str(os.getpid()) in second.stderr
