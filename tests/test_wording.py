"""What the commands print reads plainly: the bundle named as a bundle, sizes in units, one date format, no
advice about options nobody gave."""

from __future__ import annotations

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
