"""A session over one bundle graph (onnxruntime, or OpenVINO where chosen), behind a small Protocol."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from edge_search.runtime.errors import BundleError, ProviderError
from edge_search.runtime.host import default_threads
from edge_search.runtime.model import selfcheck, tensorrt, tuning
from edge_search.runtime.model.bundle import Bundle
from edge_search.runtime.model.openvino_session import open_openvino, openvino_installed
from edge_search.runtime.model.providers import (
    CUDA,
    TENSORRT,
    TENSORRT_PARITY,
    Plan,
    load_onnxruntime,
    resolve,
    started_on,
)
from edge_search.runtime.model.tuning import Tuning
from edge_search.runtime.options import CudaOptions, OpenVinoOptions

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class EmbeddingSession(Protocol):
    @property
    def device(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def why(self) -> str: ...

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [n, 3, H, W] -> float32 [n, dim] (not yet normalised)."""


@dataclass
class OrtSession:
    session: Any
    device: str
    precision: str
    input_name: str
    input_dtype: Any
    output_name: str
    per_image: bool = False  # dynamically quantized graphs: one image per call, see `run`
    why: str = ""  # why this engine and precision were chosen (providers.Plan.why)

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """A dynamically quantized graph computes one activation scale per call, over the whole batch, so
        an image's embedding would depend on its batch companions (cosine 0.999 alone vs in a batch):
        such graphs run one image per call, which costs nothing measurable on a CPU (batch 1 runs as
        fast as batch 8 there), and makes index-time and query-time embeddings identical."""
        pixels = np.ascontiguousarray(pixels, dtype=self.input_dtype)
        if self.per_image and len(pixels) > 1:
            return np.concatenate([self._run(pixels[i : i + 1]) for i in range(len(pixels))])
        return self._run(pixels)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input_name: pixels})[0], dtype=np.float32)


DYNAMIC_QUANTIZATION_OPS = ("DynamicQuantizeMatMul", "MatMulInteger", "QAttention", "DynamicQuantizeLinear")


def is_dynamically_quantized(fused_ops: dict[str, int]) -> bool:
    """Whether a graph quantizes activations at run time (scale per call), by the exporter's op counts."""
    return any(fused_ops.get(op) for op in DYNAMIC_QUANTIZATION_OPS)


def provider_library_problem(ort, device: str = "cuda") -> str | None:
    """Why the CUDA (or TensorRT) provider library cannot load (a missing CUDA / cuDNN / TensorRT library), or
    None if it can.

    A dlopen that fails on a missing dependency takes milliseconds; letting onnxruntime find out costs
    about a second per process, which a cold query on a CPU-only box should not pay.
    """
    import ctypes
    import os

    library = os.path.join(os.path.dirname(ort.__file__), "capi", f"libonnxruntime_providers_{device}.so")
    if not os.path.exists(library):
        return f"this onnxruntime build has no {_NAMES[device]} provider library"
    try:
        ctypes.CDLL(library, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError as exc:
        if "cannot open shared object file" in str(exc):
            return f"{exc} ({_NAMES[device]} runtime libraries missing)"
    return None


_NAMES = {"cuda": "CUDA", "tensorrt": "TensorRT"}
_DEVICES = {CUDA: "cuda", TENSORRT: "tensorrt"}


def _failure_reason(ort, device: str) -> str:
    return provider_library_problem(ort, device) or "no usable GPU is visible, or the driver is too old"


def open_session(
    bundle: Bundle,
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    cuda: CudaOptions = CudaOptions(),
    openvino: OpenVinoOptions = OpenVinoOptions(),
    available: list[str] | None = None,
    session_factory: Callable[..., Any] | None = None,
    one_shot: bool = False,
) -> tuple[EmbeddingSession, list[str]]:
    """Open the best session the request allows. Returns it and notes on plans that fell through.

    `one_shot`: for a process that runs the model once (a cold query): weights are not pre-packed,
    which makes the session ~0.07 s quicker to open and the one run ~0.02 s slower, and `auto` keeps OpenVINO
    (whose import and compile cost more than its speed gains back) out of it."""
    if device == "openvino":  # OpenVINO alone: onnxruntime is not needed, nor imported (a cold query's time)
        (plan,) = resolve(device, precision, [], bundle.precisions, cuda, openvino_installed())
        return replace(
            open_openvino(bundle.model_path(plan.precision), plan.precision, openvino, threads), why=plan.why
        ), []
    ort = load_onnxruntime()
    ort.set_default_logger_severity(4)  # a CUDA provider that cannot start is reported by us, in one line
    available = list(ort.get_available_providers()) if available is None else available
    factory = session_factory or ort.InferenceSession
    notes: list[str] = []
    measured = None
    if device == "auto" and precision == "auto" and session_factory is None:
        measured = tuning_of(bundle, threads)  # from the cache; measured once per machine and bundle
    plans = resolve(device, precision, available, bundle.precisions, cuda, openvino_installed(), one_shot, measured)
    for index, plan in enumerate(plans):
        if plan.device == "openvino":
            try:
                compiled = open_openvino(
                    bundle.model_path(plan.precision), plan.precision, openvino, threads, bf16=plan.bf16
                )
                return replace(compiled, why=plan.why), notes
            except ProviderError as exc:
                if index + 1 == len(plans):
                    raise
                notes.append(f"{exc.reason}; using onnxruntime on the CPU.")
                continue
        if plan.device in _NAMES and session_factory is None:
            problem = provider_library_problem(ort, plan.device)
            if problem and index + 1 < len(plans):
                if plan.device == "cuda":  # no TensorRT libraries on a CUDA box is how most are set up: no note
                    notes.append(f"CUDA cannot start ({problem}); using the CPU.")
                continue
            if problem:
                raise ProviderError(
                    f"--device {plan.device} was requested but {_NAMES[plan.device]} cannot start: {problem}. "
                    "Use --device cpu or auto.",
                    reason=f"{_NAMES[plan.device]} cannot start: {problem}",
                )
        path = bundle.model_path(plan.precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if one_shot:
            options.add_session_config_entry("session.disable_prepacking", "1")
        engine = _EngineBuild(bundle, plan, ort.__version__, cuda.device_id) if plan.device == "tensorrt" else None
        try:
            session = factory(str(path), sess_options=options, providers=engine.providers if engine else plan.providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeError types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if plan.device in _NAMES and index + 1 < len(plans):
                notes.append(f"{_NAMES[plan.device]} could not start ({reason}); using {_next(plans, index)}.")
                continue
            raise BundleError(f"onnxruntime could not load {path}: {reason}") from exc
        got = list(session.get_providers())
        if not started_on(plan, got):
            reason = f"onnxruntime fell back to {', '.join(got) or 'nothing'}: {_failure_reason(ort, plan.device)}"
            if index + 1 < len(plans):
                notes.append(f"{_NAMES[plan.device]} could not start ({reason}); using {_next(plans, index)}.")
                continue
            raise ProviderError(
                f"--device {plan.device} was requested but {_NAMES[plan.device]} could not start: {reason}. "
                "Use --device cpu or auto.",
                reason=f"{_NAMES[plan.device]} could not start: {reason}",
            )
        spec = session.get_inputs()[0]
        opened = OrtSession(
            session=session,
            device=plan.device,
            precision=plan.precision,
            input_name=spec.name,
            input_dtype=_ORT_TYPES.get(spec.type, np.float32),
            output_name=session.get_outputs()[0].name,
            per_image=is_dynamically_quantized(bundle.manifest.files[plan.precision].fused_ops),
            why=plan.why,
        )
        if engine is not None:
            try:
                engine.check(opened)
            except ProviderError as exc:
                if index + 1 < len(plans):
                    notes.append(f"{exc.reason}; using {_next(plans, index)}.")
                    continue
                raise
            notes += engine.notes
        return opened, notes
    raise ProviderError("No execution provider could start.")  # unreachable: resolve never returns []


# The two kinds of job `auto` chooses for (providers.resolve's `one_shot`), as `info` and `verify` name them.
JOBS = tuning.JOBS


def tuning_of(bundle: Bundle, threads: int | None, *, measure: bool = True, again: bool = False) -> Tuning | None:
    """What `tuning` measured of this bundle's CPU engines on this machine: from the cache, else measured now
    (announced; a few seconds) unless `measure` is False; `again` measures whatever the cache holds."""
    import importlib.metadata

    ort = load_onnxruntime()
    try:
        openvino_version: str | None = importlib.metadata.version("openvino") if openvino_installed() else None
    except importlib.metadata.PackageNotFoundError:
        openvino_version = None
    versions = {"onnxruntime": ort.__version__, "openvino": openvino_version}
    key = tuning.machine_key(bundle.identity, threads or default_threads(), versions)
    found = None if again else tuning.cached(key)
    retry = measure and tuning.stale(found)  # measured while the machine was busy, and it is quiet now
    if (found is not None and not retry) or not (measure or again):
        return found
    why = "again: the last time, other work kept the CPUs busy" if retry else "once"
    for announce in tuning.ANNOUNCERS:
        announce(
            f"measuring this machine's engines for this model, {why} (under a minute; `verify --retune` redoes it)"
        )
    fp32 = bundle.manifest.files.get("fp32")
    references = np.asarray(fp32.reference, dtype=np.float64) if fp32 is not None and fp32.reference else None
    found = tuning.run_trials(
        tuning.candidates(bundle.precisions, openvino_installed()),
        lambda candidate: open_candidate(bundle, candidate, threads),
        selfcheck.reference_pixels(*bundle.manifest.preprocess.input_hw()),  # what `references` were made from
        references,
        lambda candidate: _cold_start(bundle, candidate, threads),
    )
    tuning.remember(key, found)
    return found


def open_candidate(
    bundle: Bundle, candidate: tuning.Candidate, threads: int | None, one_shot: bool = False
) -> EmbeddingSession:
    """A session of one candidate engine, importing only that engine (OpenVINO's path never imports onnxruntime)."""
    if candidate.device == "openvino":
        path = bundle.model_path(candidate.precision)
        return open_openvino(path, candidate.precision, OpenVinoOptions(), threads, bf16=candidate.bf16)
    return open_session(bundle, device="cpu", precision=candidate.precision, threads=threads, one_shot=one_shot)[0]


def _cold_start(bundle: Bundle, candidate: tuning.Candidate, threads: int | None) -> float:
    """Seconds a fresh process takes to import `candidate`'s engine, open the graph and answer once
    (`model.cold_start`): what a cold query pays. Raises ProviderError when that process fails."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "edge_search.runtime.model.cold_start", str(bundle.root), candidate.device,
               candidate.precision, "bf16" if candidate.bf16 else "-", str(threads or default_threads())]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        return float(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        raise ProviderError(f"{candidate.label} could not start in a new process", reason="no cold start") from None


def auto_choices(bundle: Bundle, threads: int | None = None) -> dict[str, Plan]:
    """What `auto` tries first for each kind of job on this machine, with why (measuring nothing: a bundle not
    measured here yet says so). No session is opened: TensorRT and CUDA count when onnxruntime lists them and
    their libraries load (they may still fall back on a machine whose GPU cannot start, as `verify` finds out)."""
    ort = load_onnxruntime()
    available = [
        p for p in ort.get_available_providers() if p not in _DEVICES or not provider_library_problem(ort, _DEVICES[p])
    ]
    installed, measured = openvino_installed(), tuning_of(bundle, threads, measure=False)
    return {
        job: resolve(
            "auto", "auto", available, bundle.precisions, openvino_installed=installed, one_shot=one_shot,
            measured=measured,
        )[0]
        for job, one_shot in JOBS.items()
    }  # fmt: skip


def plan_label(plan: Plan) -> str:
    """'OpenVINO int8-static', 'OpenVINO bf16 (fp32 graph)', 'onnxruntime CPU int8', 'onnxruntime CUDA fp16'."""
    engine = {
        "openvino": "OpenVINO",
        "tensorrt": "onnxruntime TensorRT",
        "cuda": "onnxruntime CUDA",
        "cpu": "onnxruntime CPU",
    }[plan.device]
    return f"{engine} {'bf16 (fp32 graph)' if plan.bf16 else plan.precision}"


def _next(plans: list[Plan], index: int) -> str:
    return {"cuda": "CUDA", "cpu": "the CPU", "openvino": "OpenVINO"}.get(plans[index + 1].device, "the next engine")


class _EngineBuild:
    """A TensorRT session's engine: where it is cached (`tensorrt.EngineKey`), the message while a first build
    runs, and the parity check that keeps a wrong engine out."""

    def __init__(self, bundle: Bundle, plan: Plan, onnxruntime_version: str, device_id: int):
        self.bundle = bundle
        self.key = tensorrt.engine_key(bundle.identity, plan.precision, onnxruntime_version, device_id)
        self.folder = self.key.folder()
        self.fresh = not tensorrt.has_engine(self.folder)
        self.providers = [tensorrt.provider(self.folder, device_id), *plan.providers[1:]]
        self.notes: list[str] = []
        tensorrt.write_key(self.folder, self.key)
        if self.fresh:  # minutes of silence otherwise: said as it starts (logging's last-resort handler: stderr)
            logging.getLogger("edge_search.tensorrt").warning(
                "Building a TensorRT engine once for this GPU (%s); this takes a few minutes, later runs load it "
                "from %s.",
                self.key.gpu,
                self.folder,
            )
        self.started = time.perf_counter()

    def check(self, session: OrtSession) -> None:
        """ProviderError unless the engine reproduces the bundle's recorded embeddings to `TENSORRT_PARITY`."""
        spec = self.bundle.manifest.files[session.precision]
        try:
            lowest = selfcheck.check(session, self.bundle, spec)
        except BundleError as exc:
            raise ProviderError(
                f"The TensorRT engine does not reproduce the bundle's embeddings: {exc}",
                reason=f"the TensorRT engine fails its parity check (cosine >= {TENSORRT_PARITY} expected)",
            ) from exc
        if self.fresh:
            self.notes.append(
                f"Built a TensorRT engine for {self.key.gpu} in {time.perf_counter() - self.started:.0f} s "
                f"(parity cosine {'not recorded' if lowest is None else f'{lowest:.5f}'}); cached in {self.folder}."
            )
