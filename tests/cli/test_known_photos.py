"""A query photo the index already holds (the same bytes) is answered from its stored embedding: it is its own
first result at 1.0000, whatever engine indexed it, and no model is opened for it; a query mixing known and new
photos embeds only the new ones, and gives the same answer as embedding them all."""

from __future__ import annotations

import json
import shutil

import numpy as np
from starlette.testclient import TestClient

from conftest import cli_env, photo, run_script
from edge_search.runtime.jobs.combined_query import Term
from edge_search.runtime.library import STORED, Library, Model
from edge_search.runtime.options import ModelOptions
from edge_search.runtime.serve.app import ServiceConfig, make_app


def test_an_indexed_photo_is_its_own_first_result_at_one_without_a_model(tmp_path, tiny_bundle, photo_dir):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    env = cli_env(tmp_path, bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    copy = tmp_path / "downloads" / "same-bytes.webp"  # another name, the same content
    copy.parent.mkdir()
    shutil.copyfile(photo_dir / "img02.webp", copy)
    shutil.rmtree(bundle)  # a query that opened a model would now fail
    for query in (photo_dir / "img02.webp", copy):
        result = run_script("edge-search", "query", str(query), "-k", "3", "--json", "-v", env=env)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        best = answer["results"][0]
        assert best["path"] == str(photo_dir / "img02.webp") and f"{best['score']:.4f}" == "1.0000"
        assert answer["provider"] == STORED and "no model" in result.stderr
    embedded = run_script("edge-search", "embed", str(copy), str(photo_dir / "img01.png"), "--json", env=env)
    assert embedded.returncode == 0, embedded.stderr
    lines = [json.loads(line) for line in embedded.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(copy), str(photo_dir / "img01.png")]
    assert json.loads(embedded.stderr)["provider"] == STORED and len(lines[0]["embedding"]) == 48  # hidden size
    new = tmp_path / "new.jpg"
    photo(4242).save(new)
    for command in (["query", str(new)], ["embed", str(new), str(copy)]):  # a new photo needs the model
        missing = run_script("edge-search", *command, env=env)
        assert missing.returncode != 0 and "Traceback" not in missing.stderr


def test_a_query_mixing_known_and_new_photos_embeds_only_the_new_ones_with_the_same_answer(
    tmp_path, tiny_bundle, photo_dir
):
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    new = tmp_path / "new.png"
    photo(909, 140, 100).save(new)
    terms = [Term(image=photo_dir / "img01.png", weight=2.0), Term(image=new), Term(image=photo_dir / "img03.bmp")]
    every = model.embedder.embed_pixels(np.stack([model.pixels(t.image) for t in terms]))  # all through the model
    by_model = (np.array([[2.0], [1.0], [1.0]], dtype=np.float32) * every).sum(axis=0)
    with Library(tmp_path / "index") as library:
        library.index(model, [photo_dir])
        assert library.photos_to_embed(terms) == [1]  # only the new photo is decoded and embedded
        assert not library.answers_without_model(terms)
        mixed = library.query(model, terms=terms, k=12)
        reference = library.query(vector=by_model, k=12)
    assert [h.path for h in mixed.hits] == [h.path for h in reference.hits]
    assert np.allclose([h.score for h in mixed.hits], [h.score for h in reference.hits], atol=1e-4)
    assert mixed.provider == model.provider  # the model ran, for the new photo


def test_an_upload_of_an_indexed_photo_is_its_own_first_result_at_one(tmp_path, tiny_bundle, photo_dir):
    model = Model.open(tiny_bundle, ModelOptions(device="cpu", precision="fp32"))
    with Library(tmp_path / "index") as library:
        library.index(model, [photo_dir])
    with TestClient(make_app(Library(tmp_path / "index"), model, ServiceConfig()), base_url="http://localhost") as c:
        answer = c.post("/api/query", files={"image": ("x.png", (photo_dir / "img01.png").read_bytes())}).json()
    best = answer["results"][0]
    assert best["path"] == str(photo_dir / "img01.png") and f"{best['score']:.4f}" == "1.0000"
