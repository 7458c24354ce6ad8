"""Usage errors, through the installed `edge-search` and `export-model` scripts: one short line, exit 2,
no traceback, and nothing run or created."""

from __future__ import annotations

import pytest

from conftest import cli_env, photo, run_script


@pytest.fixture
def env(tmp_path, tiny_bundle):
    return cli_env(tmp_path, tiny_bundle)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "q.jpg"
    photo(1).save(path)
    return str(path)


def assert_usage_error(result, *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.mark.parametrize(
    "args, words",
    [
        ((), ("usage: edge-search", "index, query")),
        (("query",), ("query image", "--text")),
        (("query", "{image}", "-k", "0"), ("-k",)),
        (("query", "{image}", "-k", "abc"), ("-k", "integer")),
        (("query", "{image}", "--frobnicate"), ("--frobnicate",)),
        (("frobnicate",), ("frobnicate",)),
        (("query", "{image}", "--device", "tpu"), ("--device", "tpu")),
        (("query", "{image}", "--precision", "fp64"), ("--precision", "fp64")),
        (("query", "{image}", "--montage", "{tmp}/out"), ("--montage", ".jpg")),
        (("index", "{tmp}", "--threads", "0"), ("--threads",)),
        (("index", "{tmp}", "--batch-size", "0"), ("--batch-size",)),
        (("query", "{image}", "--cuda-arena", "huge"), ("--cuda-arena",)),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2(args, words, env, image, tmp_path):
    args = [a.format(image=image, tmp=tmp_path) for a in args]
    assert_usage_error(run_script("edge-search", *args, env=env), *words)
    assert not (tmp_path / "index").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "variable, value",
    [("EDGE_SEARCH_DEVICE", "tpu"), ("EDGE_SEARCH_PRECISION", "fp64"), ("EDGE_SEARCH_THREADS", "many")],
)
def test_a_bad_environment_value_is_a_usage_error_naming_the_variable(variable, value, env, image):
    assert_usage_error(run_script("edge-search", "query", image, env={**env, variable: value}), variable)


def test_a_montage_with_an_unknown_suffix_is_refused_before_the_query_runs(env, image, tmp_path, photo_dir):
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    result = run_script("edge-search", "query", image, "--montage", str(tmp_path / "sheet.tiff"), env=env)
    assert_usage_error(result, "--montage")
    assert not (tmp_path / "sheet.tiff").exists()


def test_version_help_and_completion(env):
    version = run_script("edge-search", "--version", env=env)
    assert version.returncode == 0 and version.stdout.startswith("edge-search ")
    help_text = run_script(
        "edge-search",
        "query",
        "--help",
        env=env,
    )
    assert help_text.returncode == 0
    flat = " ".join(help_text.stdout.split())
    # words in brackets survive (rich markup used to eat "[default: ...]"-style text)
    assert "[default: the CPUs this process may use]" in flat and "--paths-only" in flat
    completion = run_script(
        "edge-search",
        env={**env, "_EDGE_SEARCH_COMPLETE": "complete_bash", "COMP_WORDS": "edge-search qu", "COMP_CWORD": "1"},
    )
    assert completion.returncode == 0 and "query" in completion.stdout
    shown = run_script("edge-search", "--show-completion", "bash", env=env)
    assert shown.returncode == 0 and "_EDGE_SEARCH_COMPLETE" in shown.stdout


def test_export_model_usage_errors_and_version(tmp_path):
    env = cli_env(tmp_path, tmp_path / "none")
    assert_usage_error(run_script("export-model", "--precision", "fp64", "--out", str(tmp_path / "b"), env=env), "fp64")
    assert_usage_error(run_script("export-model", "--opset", "abc", env=env), "--opset")
    version = run_script("export-model", "--version", env=env)
    assert version.returncode == 0 and "edge-search" in version.stdout
