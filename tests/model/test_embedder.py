"""Embeddings: the runtime reproduces the transformers pipeline, batches survive bad files."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import cosine, photo, transformers_embeddings
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.model.embedder import Embedder
from edge_search.runtime.model.preprocess import Preprocessor
from edge_search.runtime.model.session import open_session

THRESHOLD = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.99}


def make_embedder(bundle_dir, precision, batch_size=4) -> Embedder:
    bundle = Bundle.load(bundle_dir)
    session, _ = open_session(bundle, device="cpu", precision=precision)
    return Embedder(session, Preprocessor.from_manifest(bundle.manifest), batch_size=batch_size)


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    paths = []
    for i, (w, h) in enumerate(
        [(320, 240), (240, 320), (64, 64), (1000, 300), (33, 77), (500, 500), (224, 224), (150, 90)]
    ):
        path = root / f"p{i}.{'jpg' if i % 2 else 'png'}"
        photo(500 + i, w, h).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_runtime_matches_the_pytorch_pipeline(precision, tiny_bundle, tiny_checkpoint, photo_files):
    expected = transformers_embeddings(tiny_checkpoint, photo_files)
    results = list(make_embedder(tiny_bundle, precision).embed(photo_files))
    got = np.stack([r.vector for r in results])
    assert [r.path for r in results] == photo_files
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5) and got.dtype == np.float32
    assert cosine(got, expected).min() >= THRESHOLD[precision]


def test_a_bad_file_is_reported_and_the_batch_goes_on(tiny_bundle, photo_files, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really")
    paths = [photo_files[0], broken, photo_files[1], tmp_path / "missing.png", photo_files[2]]
    results = list(make_embedder(tiny_bundle, "fp32", batch_size=2).embed(paths))
    assert [r.path for r in results] == paths
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert "not an image" in results[1].error and "not found" in results[3].error
    alone = list(make_embedder(tiny_bundle, "fp32").embed([photo_files[1]]))[0].vector
    assert cosine(results[2].vector, alone)[0] > 0.99999
    assert results[0].sha256 and len(results[0].sha256) == 64


def test_jpeg_draft_decoding_of_large_photos_stays_within_cosine_0_9999_of_full_decoding(tiny_bundle, tmp_path):
    bundle = Bundle.load(tiny_bundle)
    session, _ = open_session(bundle, device="cpu", precision="fp32")
    full = Embedder(session, Preprocessor.from_manifest(bundle.manifest, jpeg_draft=False))
    draft = Embedder(session, Preprocessor.from_manifest(bundle.manifest, jpeg_draft=True))
    paths = []
    for i, (w, h) in enumerate([(2000, 1500), (1500, 2000), (1200, 1200), (3000, 1000)]):
        paths.append(tmp_path / f"big{i}.jpg")
        photo(700 + i, w, h).save(paths[-1], quality=92)
    a = np.stack([r.vector for r in full.embed(paths)])
    b = np.stack([r.vector for r in draft.embed(paths)])
    assert cosine(a, b).min() >= 0.9999


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_an_embedding_does_not_depend_on_the_other_images_in_its_batch(precision, tiny_bundle, photo_files):
    """Dynamic int8 quantization scales activations per call: batched, a photo's embedding would drift
    with its companions (and near-duplicates swap ranks between index and query time)."""
    alone = np.stack(
        [next(iter(make_embedder(tiny_bundle, precision, batch_size=1).embed([p]))).vector for p in photo_files]
    )
    together = np.stack([r.vector for r in make_embedder(tiny_bundle, precision, batch_size=8).embed(photo_files)])
    assert len(photo_files) >= 8 and cosine(alone, together).min() >= 0.99999


def test_the_int8_graph_is_batch_dependent_without_the_runtime_s_care(tiny_bundle, photo_files):
    """Why the runtime runs dynamically quantized graphs per image: the graph itself mixes the batch."""
    bundle = Bundle.load(tiny_bundle)
    session, _ = open_session(bundle, device="cpu", precision="int8")
    assert session.per_image
    pixels = np.stack([Preprocessor.from_manifest(bundle.manifest).load(p) for p in photo_files[:8]])
    batched = session._run(pixels)
    single = np.concatenate([session._run(pixels[i : i + 1]) for i in range(8)])
    assert not np.allclose(batched, single, atol=1e-6)
