"""Which execution provider and precision to use: a pure decision, then a check of what really started.

onnxruntime-gpu lists CUDA as available even where CUDA cannot start, and then silently runs on the
CPU. So `available` only decides what to *try*; `confirm` looks at `session.get_providers()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_search.runtime.errors import ProviderError
from edge_search.runtime.options import CudaOptions, Device, Precision, choose

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# What `auto` precision means on each device, best first (the bundle may lack some graphs).
AUTO_PRECISION = {"cuda": ("fp16", "fp32"), "cpu": ("int8", "fp32")}


@dataclass(frozen=True)
class Plan:
    """One attempt: a device, a precision and the provider list handed to onnxruntime."""

    device: str
    precision: str
    providers: list[Any] = field(default_factory=list)


def _pick_precision(device: str, requested: str, have: tuple[str, ...]) -> str:
    if requested != "auto":
        return requested
    for precision in AUTO_PRECISION[device]:
        if precision in have:
            return precision
    return have[0]


def resolve(
    device: str, precision: str, available: list[str], have: tuple[str, ...], cuda: CudaOptions = CudaOptions()
) -> list[Plan]:
    """The plans to try, in order. Pure: `available` is onnxruntime's (untrusted) list of providers."""
    device, precision = choose(Device, device, "--device"), choose(Precision, precision, "--precision")
    cuda_plan = Plan("cuda", _pick_precision("cuda", precision, have), [(CUDA, cuda.as_provider_options()), CPU])
    cpu_plan = Plan("cpu", _pick_precision("cpu", precision, have), [CPU])
    if device == "cpu":
        return [cpu_plan]
    if device == "cuda":
        if CUDA not in available:
            raise ProviderError(
                "--device cuda was requested, but this onnxruntime has no CUDA provider (install the `gpu` extra: "
                "onnxruntime-gpu, and not the CPU-only onnxruntime beside it)."
            )
        return [cuda_plan]
    return [cuda_plan, cpu_plan] if CUDA in available else [cpu_plan]


def started_on(plan: Plan, session_providers: list[str]) -> bool:
    """Whether the session really runs on the plan's device (CUDA must come first)."""
    if plan.device == "cuda":
        return bool(session_providers) and session_providers[0] == CUDA
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
