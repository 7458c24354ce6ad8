"""The Python API examples (README.md's and docs/api.md's) run top to bottom as printed (in a home of their own,
with the tiny bundle in export-model's default place and a few photos in ~/Pictures)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, photo


def python_blocks(markdown: str, after: str) -> list[str]:
    section = markdown[markdown.index(after) :]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.parametrize("document, heading", [("README.md", "## Python API"), ("docs/api.md", "# The Python API")])
def test_the_python_api_example_runs_as_printed(tiny_bundle, tmp_path, document, heading):
    example = python_blocks((ROOT / document).read_text(), heading)[0]
    home = tmp_path / "home"
    pictures = home / "Pictures"
    (pictures / "old").mkdir(parents=True)
    for i in range(6):
        photo(40 + i).save((pictures / "old" if i == 5 else pictures) / f"p{i}.png")
    photo(40).save(tmp_path / "holiday.jpg")
    shutil.copytree(tiny_bundle, home / ".local" / "share" / "edge-search" / "models" / "default")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_SEARCH_", "XDG_"))}
    env["HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(pictures / "p0.png") in result.stdout  # holiday.jpg is p0's picture: the first hit
    assert Path(home / "photos-index" / "catalog.sqlite").is_file()
