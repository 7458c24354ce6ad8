"""A cold query's session is opened ahead from a guess at its options; the guess is used only when it
is exactly what the command resolved, and the answers are the same either way."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from conftest import cli_env, photo, run_script
from edge_search.runtime import prewarm
from edge_search.runtime.options import ModelOptions


def test_the_guess_reads_the_options_that_choose_the_session():
    env = {"EDGE_SEARCH_INDEX": "/idx", "EDGE_SEARCH_PRECISION": "fp32"}
    hint = prewarm.guess(["query", "a.jpg", "--model", "/b", "--device=cpu", "--threads", "3", "-k", "5"], env)
    assert hint == prewarm.Guess(model="/b", index="/idx", device="cpu", precision="fp32", threads=3)
    assert prewarm.guess(["query", "a.jpg"], {}) == prewarm.Guess(None, None, "auto", "auto", None)


def test_nothing_is_guessed_where_a_guess_would_be_unreliable():
    assert prewarm.guess(["index", "dir"], {}) is None
    assert prewarm.guess([], {}) is None
    assert prewarm.guess(["query", "a.jpg", "--cuda-mem-limit", "512"], {}) is None
    assert prewarm.guess(["query", "--help"], {}) is None
    assert prewarm.guess(["query", "a.jpg"], {"EDGE_SEARCH_CUDA_ARENA": "kSameAsRequested"}) is None
    assert prewarm.guess(["query", "a.jpg", "--threads", "many"], {}) is None


def test_a_session_opened_for_other_options_is_not_taken(tiny_bundle, monkeypatch):
    monkeypatch.setenv("EDGE_SEARCH_MODEL", str(tiny_bundle))
    prewarm.start(["query", "a.jpg", "--device", "cpu", "--precision", "fp32"])
    options = ModelOptions(device="cpu", precision="int8")
    assert prewarm.take(Path(tiny_bundle), None, options) is None
    prewarm.start(["query", "a.jpg", "--device", "cpu", "--precision", "fp32"])
    taken = prewarm.take(Path(tiny_bundle), None, replace(options, precision="fp32"))
    assert taken is not None and taken.bundle.root == Path(tiny_bundle)
    session, _notes = taken.session()
    assert session.precision == "fp32"


def test_a_query_answers_the_same_with_and_without_the_early_session(tmp_path, tiny_bundle, photo_dir):
    env = cli_env(tmp_path, tiny_bundle, EDGE_SEARCH_PRECISION="fp32")
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    image = str(tmp_path / "new.webp")  # not in the index: the model embeds it (an indexed photo needs none)
    photo(77, 130, 90).save(image)
    early = run_script("edge-search", "query", image, "--json", "-v", env=env)  # guessed from the environment
    own = run_script(
        "edge-search", "query", image, "--json", "-v", "--cuda-arena", "kSameAsRequested", env=env
    )  # not guessed
    assert early.returncode == own.returncode == 0
    assert "started while the command line loaded (prewarm)" in early.stderr  # the early session was the one used
    assert "prewarm" not in own.stderr
    assert json.loads(early.stdout)["results"] == json.loads(own.stdout)["results"]


def test_the_query_images_are_decoded_ahead_and_used_only_for_exactly_those_files_and_options(
    tiny_bundle, photo_dir, monkeypatch
):
    from edge_search.runtime.library import Model

    monkeypatch.setenv("EDGE_SEARCH_MODEL", str(tiny_bundle))
    image, other = str(photo_dir / "img02.webp"), photo_dir / "img03.jpg"
    argv = ["query", image, "-k", "3", "--under", str(photo_dir), "--device", "cpu", "--precision", "fp32"]
    assert prewarm.guess(argv, {}).images == (image,)  # a folder or an option's word is not an image
    options = ModelOptions(device="cpu", precision="fp32")
    prewarm.start(argv)
    taken = prewarm.take(Path(tiny_bundle), None, options)
    preprocessor = Model.preprocessor_for(taken.bundle, options)
    early = taken.pixels([Path(image)], preprocessor)
    assert early is not None and np.array_equal(early[0], preprocessor.load(image))
    assert taken.pixels([other], preprocessor) is None
    assert taken.pixels([Path(image)], Model.preprocessor_for(taken.bundle, replace(options, jpeg_draft=False))) is None
    assert taken.pixels([b"bytes from stdin"], preprocessor) is None
