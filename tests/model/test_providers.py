"""Device and precision resolution, with faked provider lists and a faked CUDA start that fails."""

from __future__ import annotations

import pytest

from edge_search.runtime.errors import ProviderError, UsageError
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.model.providers import CPU, CUDA, resolve
from edge_search.runtime.model.session import open_session
from edge_search.runtime.options import CudaOptions

ALL = ("fp32", "fp16", "int8")


def test_auto_tries_cuda_fp16_then_cpu_int8():
    plans = resolve("auto", "auto", [CUDA, CPU], ALL)
    assert [(p.device, p.precision) for p in plans] == [("cuda", "fp16"), ("cpu", "int8")]


def test_auto_without_cuda_is_cpu_int8():
    assert [(p.device, p.precision) for p in resolve("auto", "auto", [CPU], ALL)] == [("cpu", "int8")]


def test_auto_precision_falls_back_to_what_the_bundle_has():
    assert resolve("cpu", "auto", [CPU], ("fp32",))[0].precision == "fp32"


def test_explicit_precision_is_kept():
    assert resolve("cpu", "fp32", [CPU], ALL)[0].precision == "fp32"


def test_explicit_cuda_without_the_provider_is_an_error():
    with pytest.raises(ProviderError, match="onnxruntime-gpu"):
        resolve("cuda", "auto", [CPU], ALL)


def test_cuda_options_reach_the_provider():
    plan = resolve(
        "cuda",
        "auto",
        [CUDA, CPU],
        ALL,
        CudaOptions(device_id=1, mem_limit_bytes=1 << 30, arena_strategy="kSameAsRequested"),
    )[0]
    assert plan.providers[0] == (
        CUDA,
        {"device_id": 1, "gpu_mem_limit": 1 << 30, "arena_extend_strategy": "kSameAsRequested"},
    )


def test_bad_choices_are_usage_errors():
    with pytest.raises(UsageError):
        resolve("tpu", "auto", [CPU], ALL)
    with pytest.raises(UsageError):
        resolve("cpu", "bf16", [CPU], ALL)


class SilentFallback:
    """What onnxruntime-gpu does on a machine without CUDA: it builds the session, on the CPU only."""

    def __init__(self):
        self.requests = []

    def __call__(self, path, sess_options=None, providers=None):
        import onnxruntime as ort

        self.requests.append((path, providers))
        return ort.InferenceSession(path, sess_options, providers=[CPU])


def test_a_cuda_start_that_silently_falls_back_is_detected_in_auto_mode(tiny_bundle):
    factory = SilentFallback()
    session, notes = open_session(Bundle.load(tiny_bundle), available=[CUDA, CPU], session_factory=factory)
    assert (session.device, session.precision, session.provider) == ("cpu", "int8", CPU)
    assert factory.requests[0][0].endswith("model.fp16.onnx") and factory.requests[1][0].endswith("model.int8.onnx")
    assert notes and "CUDA could not start" in notes[0]


def test_explicit_cuda_that_cannot_start_is_an_error_not_a_silent_cpu_run(tiny_bundle):
    with pytest.raises(ProviderError, match="CUDA could not start"):
        open_session(Bundle.load(tiny_bundle), device="cuda", available=[CUDA, CPU], session_factory=SilentFallback())


def test_cpu_sessions_report_what_they_run_on(tiny_bundle):
    session, notes = open_session(Bundle.load(tiny_bundle), device="cpu", precision="fp32")
    assert (session.provider, session.precision, notes) == (CPU, "fp32", [])
