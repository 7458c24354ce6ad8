"""CLIP bundles: both towers exported through the real path and parity-checked; the runtime's tokens
are CLIPTokenizer's; image and text embeddings reproduce transformers' `get_image_features` /
`get_text_features`; `query --text` ranks by the text embedding; an image-only index refuses words."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from served import Service

from conftest import cli_env, photo, run_script
from edge_search.export.clip import PARITY_TEXTS
from edge_search.runtime.library import Model
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.model.text import TextEncoder
from edge_search.runtime.options import ModelOptions

THRESHOLDS = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.995}
TRICKY = PARITY_TEXTS + (
    "",
    "A",
    "émigré naïve façade",
    "tabs\tand\nnewlines",
    "!!!???...",
    "word " * 200,
    "ÅNGSTRÖM 1Å",
    "<|endoftext|> inside",
    "mixed 123abc ABC123",
)


@pytest.fixture(scope="module")
def transformers_clip(tiny_clip_checkpoint):
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(tiny_clip_checkpoint).eval()
    return (
        model,
        CLIPImageProcessor.from_pretrained(tiny_clip_checkpoint),
        CLIPTokenizer.from_pretrained(tiny_clip_checkpoint),
    )


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def test_the_bundle_has_both_towers_each_parity_checked(tiny_clip_bundle):
    manifest = Bundle.load(tiny_clip_bundle).manifest
    assert manifest.text is not None and manifest.architecture == "CLIPModel" and manifest.embedding_dim == 24
    assert (tiny_clip_bundle / manifest.text.tokenizer).is_file() and manifest.text.context_length == 77
    for tower in (manifest.files, manifest.text.files):
        assert sorted(tower) == ["fp16", "fp32", "int8"]
        for precision, spec in tower.items():
            assert spec.parity["min_cosine"] >= THRESHOLDS[precision] == spec.parity["threshold"]
    assert manifest.text.files["fp32"].input.dtype == "int64"


def test_the_runtime_tokens_are_clip_tokenizers(tiny_clip_bundle, transformers_clip):
    _, _, tokenizer = transformers_clip
    encoder = TextEncoder.open(Bundle.load(tiny_clip_bundle))
    ids, mask = encoder.token_ids(list(TRICKY))
    expected = tokenizer(list(TRICKY), padding="max_length", truncation=True, max_length=77)
    assert ids.tolist() == expected["input_ids"] and mask.tolist() == expected["attention_mask"]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_image_and_text_embeddings_reproduce_transformers(tiny_clip_bundle, transformers_clip, precision):
    clip, processor, tokenizer = transformers_clip
    model = Model.open(tiny_clip_bundle, ModelOptions(device="cpu", precision=precision))
    images = [photo(40 + i, 64 + 37 * i, 48 + 23 * i) for i in range(6)]
    with torch.no_grad():
        expected_images = clip.get_image_features(**processor(images=images, return_tensors="pt")).numpy()
        tokens = tokenizer(
            list(PARITY_TEXTS), padding="max_length", truncation=True, max_length=77, return_tensors="pt"
        )
        expected_texts = clip.get_text_features(**tokens).numpy()
    got_images = np.stack([model.embed_image(image) for image in images])
    got_texts = np.stack([model.embed_text(text) for text in PARITY_TEXTS])
    assert cosine(got_images, expected_images).min() >= THRESHOLDS[precision]
    assert cosine(got_texts, expected_texts).min() >= THRESHOLDS[precision]


@pytest.fixture
def clip_index(tmp_path, tiny_clip_bundle):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(10):
        photo(80 + i, 120, 90).save(photos / f"p{i}.jpg")
    env = cli_env(tmp_path, tiny_clip_bundle, EDGE_SEARCH_PRECISION="fp32")
    assert run_script("edge-search", "index", str(photos), env=env).returncode == 0
    return env, photos


def test_query_text_ranks_the_library_by_the_words(clip_index):
    env, photos = clip_index
    words = "a dog on the beach"
    text = json.loads(run_script("edge-search", "embed", "--text", words, "--json", env=env).stdout.splitlines()[0])
    images = [
        json.loads(line)
        for line in run_script(
            "edge-search", "embed", "--json", *sorted(map(str, photos.iterdir())), env=env
        ).stdout.splitlines()
    ]
    expected = sorted(images, key=lambda row: -float(np.dot(row["embedding"], text["embedding"])))
    result = run_script("edge-search", "query", "--text", words, "-k", "10", "--json", env=env)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["text"] == words and [r["path"] for r in body["results"]][:3] == [row["path"] for row in expected][:3]
    mixed = run_script(
        "edge-search", "query", str(photos / "p3.jpg"), "--text", words, "--text-weight", "0.5", "--json", env=env
    )
    assert mixed.returncode == 0 and len(json.loads(mixed.stdout)["results"]) == 10


def test_the_service_searches_by_words(clip_index):
    env, _ = clip_index
    service = Service(env, "--no-watch")
    try:
        service.wait_ready()
        assert service.health()["text"] is True
        boundary = "b0und4ry"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\na dog\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n4\r\n--{boundary}--\r\n'
        ).encode()
        status, answer, _ = service.request(
            "/api/query", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert status == 200 and len(answer["results"]) == 4
    finally:
        service.stop()


def test_an_image_only_index_refuses_words_with_a_way_out(tmp_path, tiny_bundle, photo_dir):
    env = cli_env(tmp_path, tiny_bundle)
    assert run_script("edge-search", "index", str(photo_dir), env=env).returncode == 0
    result = run_script("edge-search", "query", "--text", "a dog", env=env)
    assert result.returncode == 2 and "no text tower" in result.stderr and "CLIP" in result.stderr
    assert "Traceback" not in result.stderr
    nothing = run_script("edge-search", "query", env=env)
    assert nothing.returncode == 2 and "--text" in nothing.stderr
