"""Which execution provider and precision to use: a pure decision, then a check of what really started.

onnxruntime-gpu lists CUDA as available even where CUDA cannot start, and then silently runs on the
CPU. So `available` only decides what to *try*; `confirm` looks at `session.get_providers()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from edge_search.runtime.errors import ProviderError, UsageError
from edge_search.runtime.model.tuning import LONG, ONE_SHOT, Tuning
from edge_search.runtime.options import CudaOptions, Device, Precision, choose

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# The parity a TensorRT engine (fp16 arithmetic) must keep against the bundle's recorded references, cosine.
TENSORRT_PARITY = 0.999
# What `auto` precision means on each device, best first (the bundle may lack some graphs). TensorRT builds its
# fp16 engine from the fp32 graph (`model.tensorrt`).
AUTO_PRECISION = {
    "tensorrt": ("fp32", "fp16"),
    "cuda": ("fp16", "fp32"),
    "openvino": ("int8-static", "fp32"),
    "cpu": ("int8", "fp32"),
}
# What OpenVINO can read: not `int8`, onnxruntime's dynamic quantization (QAttention and friends).
OPENVINO_PRECISIONS = ("int8-static", "fp32", "fp16")
OPENVINO_EXTRA = "pip install 'edge-search[openvino]'"


@dataclass(frozen=True)
class Plan:
    """One attempt: a device, a precision, the provider list handed to onnxruntime, and why it was chosen (what
    `info`, `verify` and the index line tell a person)."""

    device: str
    precision: str
    providers: list[Any] = field(default_factory=list)
    why: str = ""
    bf16: bool = False  # OpenVINO computing the fp32 graph in bfloat16 (where `auto` measured it the fastest)

    def because(self, why: str) -> Plan:
        return replace(self, why=why)


# Why `auto` takes what it takes on the CPU: what `tuning` measured on this machine (its `why`), else these.
WHY_UNMEASURED = "auto: onnxruntime on the CPU (the engines were not measured on this machine)"
WHY_FALLBACK = "auto: onnxruntime on the CPU (the engine measured fastest could not start)"
WHY_NO_OPENVINO = "auto: onnxruntime on the CPU (OpenVINO, measured the fastest here, is no longer installed)"
WHY_NONE_PASSED = "auto: onnxruntime on the CPU (no engine passed its check when measured here)"
WHY_CUDA = "auto: CUDA, onnxruntime's GPU provider, tried first wherever it is installed"
WHY_TENSORRT = "auto: TensorRT (an fp16 engine built once per GPU and cached), tried first where its libraries load"
TENSORRT_MISSING = (
    "this onnxruntime has no TensorRT provider (install the `gpu` extra's onnxruntime-gpu, and TensorRT: "
    "`pip install tensorrt-cu12` on a PC, JetPack's own on a Jetson)"
)


def _pick_precision(device: str, requested: str, have: tuple[str, ...]) -> str:
    if requested != "auto":
        return requested
    for precision in AUTO_PRECISION[device]:
        if precision in have:
            return precision
    return have[0]


def resolve(
    device: str,
    precision: str,
    available: list[str],
    have: tuple[str, ...],
    cuda: CudaOptions = CudaOptions(),
    openvino_installed: bool = False,
    one_shot: bool = False,
    measured: Tuning | None = None,
) -> list[Plan]:
    """The plans to try, in order, each with why. Pure: `available` is onnxruntime's (untrusted) list of
    providers, `openvino_installed` whether the openvino package is there to try, `one_shot` whether the process
    runs the model once (a cold query or embed), where start-up time is the cost, `measured` what `tuning`
    measured of this bundle on this machine (`auto` on the CPU takes the fastest that passed its check)."""
    device, precision = choose(Device, device, "--device"), choose(Precision, precision, "--precision")
    cuda_plan = Plan("cuda", _pick_precision("cuda", precision, have), [(CUDA, cuda.as_provider_options()), CPU])
    # the TensorRT provider's options (its engine cache) are filled in when the session opens: see `tensorrt`
    tensorrt_plan = Plan("tensorrt", _pick_precision("tensorrt", precision, have), [TENSORRT, *cuda_plan.providers])
    cpu_plan = Plan("cpu", _pick_precision("cpu", precision, have), [CPU])
    openvino_plan = Plan("openvino", _pick_precision("openvino", precision, have))
    if device == "cpu":
        return [cpu_plan.because("--device cpu: onnxruntime on the CPU, as asked")]
    if device == "openvino":
        if openvino_plan.precision not in OPENVINO_PRECISIONS:
            raise UsageError(
                f"--device openvino cannot run the {openvino_plan.precision} graph (onnxruntime's dynamic "
                "quantization); use --precision int8-static (export-model --calibration-photos makes it) or fp32."
            )
        if not openvino_installed:
            raise ProviderError(
                f"--device openvino was requested, but OpenVINO is not installed: {OPENVINO_EXTRA}.",
                reason="OpenVINO is not installed",
            )
        return [openvino_plan.because("--device openvino: OpenVINO, as asked")]
    if device == "cuda":
        if CUDA not in available:
            raise ProviderError(
                "--device cuda was requested, but this onnxruntime has no CUDA provider (install the `gpu` extra: "
                "onnxruntime-gpu, and not the CPU-only onnxruntime beside it)."
            )
        return [cuda_plan.because("--device cuda: CUDA, as asked")]
    if device == "tensorrt":
        if TENSORRT not in available:
            raise ProviderError(
                f"--device tensorrt was requested, but {TENSORRT_MISSING}. Use --device cuda, cpu or auto.",
                reason="TensorRT is not in this onnxruntime",
            )
        return [tensorrt_plan.because("--device tensorrt: TensorRT, as asked")]
    plans = [tensorrt_plan.because(WHY_TENSORRT)] if TENSORRT in available else []
    plans += [cuda_plan.because(WHY_CUDA)] if CUDA in available else []
    job = ONE_SHOT if one_shot else LONG
    chosen = measured.choice(job) if measured is not None and precision == "auto" else None
    if chosen is None:
        return [*plans, cpu_plan.because(WHY_UNMEASURED if measured is None else WHY_NONE_PASSED)]
    c = chosen.candidate
    if c.device == "openvino" and not openvino_installed:  # measured with OpenVINO, which has gone since
        return [*plans, cpu_plan.because(WHY_NO_OPENVINO)]
    if c.device == "openvino":
        plans.append(Plan("openvino", c.precision, bf16=c.bf16).because(measured.why(job)))  # type: ignore[union-attr]
        return [*plans, cpu_plan.because(WHY_FALLBACK)]
    return [*plans, Plan("cpu", c.precision, [CPU]).because(measured.why(job))]  # type: ignore[union-attr]


def started_on(plan: Plan, session_providers: list[str]) -> bool:
    """Whether the session really runs on the plan's device (CUDA, or TensorRT, must come first)."""
    if plan.device in ("cuda", "tensorrt"):
        return bool(session_providers) and session_providers[0] == (CUDA if plan.device == "cuda" else TENSORRT)
    return CPU in session_providers


def load_onnxruntime() -> Any:
    """The onnxruntime module, or a ProviderError that names the extra to install (a bare install has none)."""
    try:
        import onnxruntime
    except ImportError:
        raise ProviderError(
            "onnxruntime is not installed: edge-search runs its models with it. Install one of the two extras, "
            "never both: pip install 'edge-search[cpu]' (CPU only, small) or 'edge-search[gpu]' (CUDA, and the "
            "CPU too)."
        ) from None
    return onnxruntime
