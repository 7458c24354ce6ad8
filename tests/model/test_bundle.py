"""Bundle loading: sizes always checked, hashes once per file state, tampering refused before onnxruntime."""

from __future__ import annotations

import json
import shutil

import pytest

from edge_search.runtime.errors import BundleError
from edge_search.runtime.files import VerifiedCache
from edge_search.runtime.model.bundle import Bundle


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def test_a_good_bundle_loads_and_verifies(bundle_copy, tmp_path):
    bundle = Bundle.load(bundle_copy)
    assert bundle.precisions == ("fp32", "fp16", "int8")
    assert bundle.model_path("fp32", cache=VerifiedCache(tmp_path / "c.json")).name == "model.fp32.onnx"


def test_a_missing_bundle_says_how_to_make_one(tmp_path):
    with pytest.raises(BundleError, match="export-model"):
        Bundle.load(tmp_path / "nothing")


def test_a_truncated_model_is_refused_on_load(bundle_copy):
    path = bundle_copy / "model.int8.onnx"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BundleError, match="truncated"):
        Bundle.load(bundle_copy)


def test_a_tampered_model_of_the_same_size_is_refused(bundle_copy, tmp_path):
    path = bundle_copy / "model.fp32.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its manifest"):
        Bundle.load(bundle_copy).model_path("fp32", cache=VerifiedCache(tmp_path / "c.json"))


def test_hashes_are_checked_once_per_file_state(bundle_copy, tmp_path, monkeypatch):
    cache = VerifiedCache(tmp_path / "c.json")
    bundle = Bundle.load(bundle_copy)
    bundle.model_path("int8", cache=cache)
    calls = []
    monkeypatch.setattr("edge_search.runtime.model.bundle.sha256_file", lambda p: calls.append(p) or "x")
    bundle.model_path("int8", cache=cache)
    assert calls == []
    (bundle_copy / "model.int8.onnx").touch()  # a new mtime is a new state: hashed again (and here: refused)
    with pytest.raises(BundleError):
        bundle.model_path("int8", cache=cache)
    assert len(calls) == 1


def test_unknown_schema_and_external_data_are_refused(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    (bundle_copy / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(BundleError, match="schema version 99"):
        Bundle.load(bundle_copy)
    (bundle_copy / "manifest.json").write_text(json.dumps({**manifest, "external_data": True}))
    with pytest.raises(BundleError, match="external data"):
        Bundle.load(bundle_copy)
