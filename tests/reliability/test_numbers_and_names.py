"""Numbers out of range and names that try to drive the terminal: a weight, threshold, score or k outside its
documented range is a usage error (exit 2, one line) or a 400 in one JSON line; no answer ever holds NaN or Infinity;
a file name's control characters are shown as ⟨U+001B⟩ to a person and given exactly, byte for byte, to programs."""

from __future__ import annotations

import json
import subprocess

import pytest
from served import Service

from conftest import cli_env, console_script, photo, run_script

pytestmark = pytest.mark.slow  # tier: CONTRIBUTING.md "The test tiers" (the installed scripts, end to end)

HOSTILE_NAME = "esc\x1b[31mRED\x1b[0m\x1b]0;pwned\x07.jpg"  # CSI colours, OSC retitles the window, BEL
CR_NAME = "innocent.jpg\rEVIL.jpg"  # a carriage return overwrites the line it is printed on


def strict_json(text: str):
    """JSON as strict parsers read it: NaN and Infinity are not JSON."""

    def refuse(constant: str):
        raise AssertionError(f"{constant} in a JSON answer")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "weighted",
    ["1e40:{photo}", "1000000000000000000000000000000000000000000:{photo}", "101:{photo}", "5e2:{photo}"],
)
def test_a_query_weight_out_of_range_is_a_usage_error_in_one_line(indexed, weighted):
    env, photos = indexed
    result = run_script("edge-search", "query", weighted.format(photo=photos / "img01.png"), "--json", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "weight must be a number between -100 and 100" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


@pytest.mark.parametrize("option", [["--min-score", "nan"], ["-k", "1000000"]])
def test_a_score_or_k_out_of_range_is_a_usage_error(indexed, option):
    env, photos = indexed
    result = run_script("edge-search", "query", str(photos / "img01.png"), *option, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_largest_weights_still_give_strict_json(indexed):
    env, photos = indexed
    query = ["query", f"100:{photos / 'img01.png'}", "--unlike", f"99.5:{photos / 'img02.webp'}", "--json"]
    result = run_script("edge-search", *query, env=env)
    assert result.returncode == 0, result.stderr
    answer = strict_json(result.stdout)
    assert answer["results"] and all(-1.0 <= hit["score"] <= 1.0 for hit in answer["results"])


@pytest.fixture
def hostile_names(tmp_path, tiny_bundle):
    folder = tmp_path / "names"
    folder.mkdir()
    photo(11).save(folder / HOSTILE_NAME)
    photo(12).save(folder / CR_NAME)
    (folder / "broken\x1b]0;owned\x07.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    env = cli_env(tmp_path, tiny_bundle)
    return env, folder


def test_names_with_control_characters_are_shown_visibly_and_never_obeyed(hostile_names):
    env, folder = hostile_names
    indexed = run_script("edge-search", "index", str(folder), env=env)
    assert indexed.returncode == 4, indexed.stderr  # the broken file failed, the others were indexed
    assert "broken⟨U+001B⟩]0;owned⟨U+0007⟩.jpg" in indexed.stderr
    ranked = run_script("edge-search", "query", str(folder / HOSTILE_NAME), "-k", "2", env=env)
    assert ranked.returncode == 0, ranked.stderr
    shown = ranked.stdout + ranked.stderr
    assert "esc⟨U+001B⟩[31mRED⟨U+001B⟩[0m⟨U+001B⟩]0;pwned⟨U+0007⟩.jpg" in shown
    assert "innocent.jpg⟨U+000D⟩EVIL.jpg" in shown
    assert not {"\x1b", "\x07", "\r"} & set(shown)


def test_paths_for_programs_are_the_exact_bytes(hostile_names):
    env, folder = hostile_names
    run_script("edge-search", "index", str(folder), env=env)
    query = [console_script("edge-search"), "query", str(folder / HOSTILE_NAME), "-k", "2"]
    expected = {str(folder / HOSTILE_NAME).encode(), str(folder / CR_NAME).encode()}
    nul = subprocess.run([*query, "-0"], env=env, capture_output=True)
    assert set(nul.stdout.split(b"\0")[:-1]) == expected and nul.stdout.endswith(b"\0")
    lines = subprocess.run([*query, "-f"], env=env, capture_output=True)  # piped: exact bytes, one path per line
    assert lines.stdout.split(b"\n")[0] == str(folder / HOSTILE_NAME).encode()
    as_json = run_script("edge-search", *query[1:], "--json", env=env)
    assert {hit["path"] for hit in strict_json(as_json.stdout)["results"]} == {p.decode() for p in expected}


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/api/query", {"image_weight": "1e39"}),
        ("/api/query", {"image_weight": "nan"}),
        ("/api/query", {"image_weight": "0"}),
    ],
)
def test_the_service_refuses_numbers_out_of_range_in_one_json_line(indexed, path, fields):
    env, photos = indexed
    service = Service(env, "--no-watch")
    try:
        service.wait_ready()
        status, body, kind = service.upload((photos / "img01.png").read_bytes(), **fields)
        assert status == 400 and kind.startswith("application/json"), body
        assert "weight" in body["error"] and "\n" not in body["error"]
        for query in ("threshold=nan", "threshold=inf", "threshold=1e400", "threshold=-0.5"):
            status, body, kind = service.request(f"/api/dupes?{query}")
            assert status == 400 and kind.startswith("application/json") and "threshold" in body["error"], query
    finally:
        service.stop()
