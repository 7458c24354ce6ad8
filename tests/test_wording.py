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
