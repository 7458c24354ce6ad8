"""`edge-search serve` refuses what it cannot do safely, in one line and a documented exit code, before it
loads a model or says it is serving."""

from __future__ import annotations

import socket

import pytest

from conftest import cli_env, run_script
from edge_search.runtime.library import Library, Model
from edge_search.runtime.options import ModelOptions


@pytest.mark.parametrize("token", ["change-me", "PASTE-YOUR-TOKEN-HERE", "x", "fifteen-chars!!"])
def test_a_weak_token_is_refused_for_a_network_address_with_how_to_make_one(tmp_path, tiny_bundle, token):
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_TOKEN=token)
    result = run_script("edge-search", "serve", "--host", "0.0.0.0", "--port", "9", env=env, timeout=60)
    assert result.returncode == 2 and "secrets.token_urlsafe" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line_naming_it_and_exit_12_and_nothing_claims_to_serve(tmp_path, tiny_bundle, photo_dir):
    with Library(tmp_path / "index") as library:
        library.index(Model.open(tiny_bundle, ModelOptions(device="cpu")), [photo_dir])
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_script("edge-search", "serve", "--port", str(port), env=cli_env(tmp_path, tiny_bundle), timeout=60)
    assert result.returncode == 12, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "--port" in result.stderr and "serving" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Errno" not in result.stderr
