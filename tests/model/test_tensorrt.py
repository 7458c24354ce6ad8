"""TensorRT as a device, on a machine without a GPU: the plans `auto` and `--device tensorrt` make, the engine
cache's key, the parity check that keeps a wrong engine out, and the refusal a person reads. A session factory
stands in for onnxruntime's TensorRT provider (a real CPU session that reports TensorRT first), as the CUDA
tests do; nothing here claims TensorRT works on a GPU."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import onnxruntime as ort
import pytest

from conftest import cli_env, edge_search
from edge_search.runtime.errors import ProviderError
from edge_search.runtime.model import tensorrt
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.model.providers import CPU, CUDA, TENSORRT, WHY_TENSORRT, resolve
from edge_search.runtime.model.session import open_session

ALL = ("fp32", "fp16", "int8")


def test_auto_tries_tensorrt_then_cuda_then_the_cpu():
    plans = resolve("auto", "auto", [TENSORRT, CUDA, CPU], ALL)
    assert [(p.device, p.precision) for p in plans] == [("tensorrt", "fp32"), ("cuda", "fp16"), ("cpu", "int8")]
    assert plans[0].why == WHY_TENSORRT


def test_tensorrt_falls_back_inside_its_session_to_cuda_then_the_cpu():
    (plan,) = resolve("tensorrt", "auto", [TENSORRT, CUDA, CPU], ALL)
    assert plan.providers[0] == TENSORRT and [p if isinstance(p, str) else p[0] for p in plan.providers[1:]] == [
        CUDA,
        CPU,
    ]


def test_an_explicit_tensorrt_without_the_provider_names_what_to_install():
    with pytest.raises(ProviderError, match=r"--device tensorrt was requested.*tensorrt-cu12.*JetPack"):
        resolve("tensorrt", "auto", [CUDA, CPU], ALL)


def test_the_engine_cache_key_changes_with_the_bundle_the_versions_and_the_gpu(tmp_path):
    key = tensorrt.EngineKey("identity", "fp32", "1.31.1", "10.13", "NVIDIA H200, driver 580")
    changed = [
        dataclasses.replace(key, bundle_identity="other"),
        dataclasses.replace(key, precision="fp16"),
        dataclasses.replace(key, onnxruntime="1.32.0"),
        dataclasses.replace(key, tensorrt="10.14"),
        dataclasses.replace(key, gpu="NVIDIA H200, driver 590"),
    ]
    folders = {key.folder(tmp_path), *(other.folder(tmp_path) for other in changed)}
    assert len(folders) == 6 and key.folder(tmp_path) == dataclasses.replace(key).folder(tmp_path)
    name, options = tensorrt.provider(key.folder(tmp_path), device_id=1)
    assert name == TENSORRT and options["trt_fp16_enable"] and options["device_id"] == 1
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(key.folder(tmp_path))


class FakeTensorRT:
    """A CPU session that says it runs on TensorRT when TensorRT was asked for; `wrong` makes its engine compute
    something else (a broken build). Records what it was asked."""

    def __init__(self, wrong: bool = False):
        self.wrong, self.requests = wrong, []

    def __call__(self, path, sess_options=None, providers=None):
        self.requests.append((path, providers))
        session = ort.InferenceSession(path, sess_options, providers=[CPU])
        asked_tensorrt = providers and isinstance(providers[0], tuple) and providers[0][0] == TENSORRT
        return _Claiming(session, self.wrong) if asked_tensorrt else session


class _Claiming:
    def __init__(self, session, wrong: bool):
        self._session, self._wrong = session, wrong

    def get_providers(self):
        return [TENSORRT, CUDA, CPU]

    def run(self, outputs, feeds):
        result = self._session.run(outputs, feeds)
        return [np.random.default_rng(0).normal(size=result[0].shape).astype(np.float32)] if self._wrong else result

    def __getattr__(self, name):
        return getattr(self._session, name)


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "edge-search" / "tensorrt"


def test_a_first_engine_is_announced_built_checked_and_its_key_kept_beside_it(tiny_bundle, user_cache, caplog):
    factory = FakeTensorRT()
    with caplog.at_level(logging.WARNING, logger="edge_search.tensorrt"):
        session, notes = open_session(
            Bundle.load(tiny_bundle), device="tensorrt", available=[TENSORRT, CUDA, CPU], session_factory=factory
        )
    assert (session.device, session.precision, session.provider) == ("tensorrt", "fp32", TENSORRT)
    assert "Building a TensorRT engine once for this GPU" in caplog.text
    assert len(notes) == 1 and notes[0].startswith("Built a TensorRT engine") and "parity cosine" in notes[0]
    (folder,) = user_cache.iterdir()
    assert factory.requests[0][1][0] == tensorrt.provider(folder)
    assert json.loads((folder / "key.json").read_text())["bundle_identity"] == Bundle.load(tiny_bundle).identity


def test_an_engine_that_fails_parity_is_not_used_auto_moves_on_and_explicit_refuses(tiny_bundle, user_cache):
    bundle = Bundle.load(tiny_bundle)
    session, notes = open_session(bundle, available=[TENSORRT, CUDA, CPU], session_factory=FakeTensorRT(wrong=True))
    assert session.provider == CPU
    assert any("TensorRT engine fails its parity check" in note and "using CUDA" in note for note in notes)
    with pytest.raises(ProviderError, match="does not reproduce the bundle's embeddings"):
        open_session(bundle, device="tensorrt", available=[TENSORRT, CUDA, CPU], session_factory=FakeTensorRT(True))


def test_tensorrt_on_this_machine_is_one_paragraph_and_exit_5_and_auto_is_unchanged(tiny_bundle, tmp_path, photo_dir):
    env = cli_env(tmp_path, tiny_bundle)
    refused = edge_search("index", str(photo_dir), "--device", "tensorrt", env=env)
    assert refused.returncode == 5, refused.stderr
    assert "--device tensorrt was requested" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) <= 3
    auto = edge_search("index", str(photo_dir), "--json", env={**env, "EDGE_SEARCH_DEVICE": "auto"})
    provider = json.loads(auto.stdout)["provider"]  # the CPU engine auto measured fastest here: no GPU
    assert auto.returncode == 0 and provider in (CPU, "OpenVINO CPU", "OpenVINO CPU bf16")
    assert "TensorRT" not in auto.stderr
    engines = json.loads(edge_search("info", "--json", env=env).stdout)["engines"]
    assert not any("TensorRT" in engine for engine in engines.values())
