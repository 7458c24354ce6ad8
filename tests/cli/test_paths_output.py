"""`-f` and `-0`: the paths `query` and `dupes` print reach `xargs` intact, whatever the file names hold."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import cli_env, console_script, photo, run_script

AWKWARD = ["holiday 2024 ✈/plage d'été 🌊.jpg", 'it\'s "quoted" (1).png', "  leading spaces.webp"]


@pytest.fixture
def indexed(tmp_path, tiny_bundle):
    photos = tmp_path / "photos"
    for i, name in enumerate(AWKWARD):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        photo(300 + i, 120, 90).save(photos / name)
    shutil.copyfile(photos / AWKWARD[1], photos / "copy of it's.png")
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photos), env=env).returncode == 0
    return env, photos


def through_xargs(command: list[str], env: dict) -> list[str]:
    """`command | xargs -0 printf '%s\\n'` run by a real shell: the names as xargs hands them to a program."""
    script = shlex.join(command) + " | xargs -0 printf '%s\\n'"
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.splitlines()


def test_query_print0_hands_every_name_to_xargs_unbroken(indexed):
    env, photos = indexed
    names = through_xargs([console_script("edge-search"), "query", str(photos / AWKWARD[0]), "-k", "4", "-0"], env)
    assert sorted(names) == sorted([str(photos / n) for n in AWKWARD] + [str(photos / "copy of it's.png")])
    assert names[0] == str(photos / AWKWARD[0])


def test_dupes_print0_lists_only_the_copies_beside_their_keeper(indexed):
    env, photos = indexed
    names = through_xargs([console_script("edge-search"), "dupes", "--threshold", "0.99999", "-0"], env)
    assert len(names) == 1 and Path(names[0]).name in {AWKWARD[1], "copy of it's.png"}


def test_paths_only_prints_one_name_per_line(indexed):
    env, photos = indexed
    listed = run_script("edge-search", "query", str(photos / AWKWARD[2]), "-k", "1", "-f", env=env).stdout
    assert listed == f"{photos / AWKWARD[2]}\n"
