"""An OpenVINO session over one bundle graph: Intel CPUs (and, one option away, Intel GPUs and NPUs).

OpenVINO compiles a model when a session opens (about a second for ViT-S on two cores); the compiled form is
cached next to the bundle's verified state (`files.cache_dir()/openvino`), keyed by OpenVINO itself on the
graph, the device and the settings, so later processes load it instead. Inference precision is pinned to f32 on
the CPU: on CPUs with AMX OpenVINO would otherwise run the unquantized parts in bf16, which the parity gate did
not measure.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_search.runtime.errors import ProviderError
from edge_search.runtime.files import cache_dir
from edge_search.runtime.host import default_threads
from edge_search.runtime.model.providers import OPENVINO_EXTRA
from edge_search.runtime.options import OpenVinoOptions


def openvino_installed() -> bool:
    """Whether the `openvino` package is there to try (cheap: nothing is imported)."""
    return importlib.util.find_spec("openvino") is not None


def model_cache_dir() -> Path:
    return cache_dir() / "openvino"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def compile_graph(path: Path, options: OpenVinoOptions, threads: int | None, bf16: bool = False) -> Any:
    """The compiled model, or a ProviderError saying why OpenVINO cannot run it (not installed, broken, or the
    device is missing)."""
    try:
        import openvino
    except Exception as exc:  # a broken install raises anything from ImportError to OSError
        raise ProviderError(
            f"OpenVINO cannot be imported ({_first_line(exc)}); install it with {OPENVINO_EXTRA}.",
            reason=f"OpenVINO cannot be imported: {_first_line(exc)}",
        ) from None
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if options.device == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads or default_threads()
        config["INFERENCE_PRECISION_HINT"] = "bf16" if bf16 else "f32"  # bf16: where `auto` measured it good
    if options.cache:
        directory = model_cache_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(directory)
        except OSError:
            pass  # no cache: every process compiles, nothing else changes
    try:
        return openvino.Core().compile_model(str(path), options.device, config)
    except Exception as exc:  # OpenVINO raises RuntimeError for a missing device, an unreadable graph, ...
        raise ProviderError(
            f"OpenVINO could not compile {path.name} for its {options.device} device: {_first_line(exc)}.",
            reason=f"OpenVINO could not start on {options.device}: {_first_line(exc)}",
        ) from None


@dataclass
class OpenVinoSession:
    """The `EmbeddingSession` of an OpenVINO compiled model. Static quantization: an image's embedding does not
    depend on its batch companions, so batches run whole."""

    compiled: Any
    precision: str
    target: str = "CPU"
    device: str = "openvino"
    why: str = ""  # why this engine was chosen (providers.Plan.why)
    _requests: threading.local = field(default_factory=threading.local)

    bf16: bool = False  # the fp32 graph computed in bfloat16 (tuning.Candidate.bf16)

    @property
    def provider(self) -> str:
        return f"OpenVINO {self.target}" + (" bf16" if self.bf16 else "")

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """One infer request per thread (a request is not safe to share; the compiled model is)."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        result = request.infer({0: np.ascontiguousarray(pixels, dtype=np.float32)})
        return np.array(result[0], dtype=np.float32)  # a copy: the request reuses its output buffer


def open_openvino(
    path: Path, precision: str, options: OpenVinoOptions, threads: int | None, bf16: bool = False
) -> OpenVinoSession:
    return OpenVinoSession(compile_graph(path, options, threads, bf16), precision, options.device, bf16=bf16)
