"""The device side works where torch, transformers and optimum cannot be imported at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import photo

BLOCKER = """
import sys

import pytest
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'optimum'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = ['edge-search'] + sys.argv[1:]
from edge_search.runtime.cli import main
main()
"""


def run_blocked(*args, env):
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], env=env, capture_output=True, text=True, timeout=300)


def test_runtime_and_cli_work_without_torch_transformers_or_optimum(tiny_bundle, tmp_path):
    for i in range(3):
        photo(i, 90, 60).save(tmp_path / f"{i}.jpg")
    env = {
        **os.environ,
        "EDGE_SEARCH_MODEL": str(tiny_bundle),
        "EDGE_SEARCH_INDEX": str(tmp_path / "idx"),
        "EDGE_SEARCH_DEVICE": "cpu",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    embedded = run_blocked("embed", "--json", str(tmp_path / "0.jpg"), env=env)
    assert embedded.returncode == 0, embedded.stderr
    assert len(json.loads(embedded.stdout.splitlines()[0])["embedding"]) == 48
    indexed = run_blocked("index", str(tmp_path), env=env)
    assert indexed.returncode == 0, indexed.stderr
    queried = run_blocked("query", "--json", str(tmp_path / "1.jpg"), env=env)
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout)["results"][0]["path"] == str(tmp_path / "1.jpg")


def test_no_runtime_module_imports_torch_transformers_or_optimum():
    code = (
        "import sys, pkgutil, importlib, edge_search.runtime as r\n"
        "for m in pkgutil.walk_packages(r.__path__, 'edge_search.runtime.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'transformers', 'optimum')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_text_search_works_without_torch_transformers_or_optimum(tiny_clip_bundle, tmp_path):
    for i in range(3):
        photo(i, 90, 60).save(tmp_path / f"{i}.jpg")
    env = {
        **os.environ,
        "EDGE_SEARCH_MODEL": str(tiny_clip_bundle),
        "EDGE_SEARCH_INDEX": str(tmp_path / "idx"),
        "EDGE_SEARCH_DEVICE": "cpu",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    assert run_blocked("index", str(tmp_path), env=env).returncode == 0
    queried = run_blocked("query", "--text", "a dog on a beach", "--json", env=env)
    assert queried.returncode == 0, queried.stderr
    assert len(json.loads(queried.stdout)["results"]) == 3


@pytest.mark.scale
def test_fleet_sync_and_query_work_without_torch_transformers_or_optimum(tiny_bundle, tmp_path):
    pytest.importorskip("pymilvus")
    for i in range(3):
        photo(i, 90, 60).save(tmp_path / f"{i}.jpg")
    env = {
        **os.environ,
        "EDGE_SEARCH_MODEL": str(tiny_bundle),
        "EDGE_SEARCH_INDEX": str(tmp_path / "idx"),
        "EDGE_SEARCH_DEVICE": "cpu",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    assert run_blocked("index", str(tmp_path), env=env).returncode == 0
    fleet = str(tmp_path / "fleet.db")
    synced = run_blocked("sync", "--milvus", fleet, "--box", "alpha", "--json", env=env)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["added"] == 3
    queried = run_blocked("query", str(tmp_path / "2.jpg"), "--milvus", fleet, "--json", env=env)
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout)["results"][0]["path"] == str(tmp_path / "2.jpg")


def test_without_onnxruntime_the_cli_names_the_extra_to_install(tiny_bundle, tmp_path):
    """A bare `pip install edge-search` (no extra) has no onnxruntime: one paragraph, exit 5, --version works."""
    blocker = BLOCKER.replace("('torch', 'transformers', 'optimum')", "('onnxruntime',)")
    env = {**os.environ, "EDGE_SEARCH_MODEL": str(tiny_bundle), "EDGE_SEARCH_INDEX": str(tmp_path / "idx")}
    photo(1, 90, 60).save(tmp_path / "a.jpg")

    def run(*args):
        return subprocess.run(
            [sys.executable, "-c", blocker, *args], env=env, capture_output=True, text=True, timeout=300
        )

    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("edge-search ")
    embedded = run("embed", str(tmp_path / "a.jpg"))
    assert embedded.returncode == 5, embedded.stderr
    assert "pip install 'edge-search[cpu]'" in embedded.stderr and "Traceback" not in embedded.stderr
