"""What this machine lets the process use: CPUs, and the CPU facts that decide engines and int8 weights.

The CPU facts can be stood in for (`EDGE_SEARCH_CPU_CLASS`, CONTRIBUTING.md "CPU classes"): the choice they drive
(which int8 weights export writes) is then that of another class of CPU, so every class's behaviour is tested on
any machine. A stand-in changes decisions only; the arithmetic stays this CPU's. Which engine `auto` runs is not
decided from flags at all: it is measured (`model.tuning`)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from edge_search.runtime.errors import UsageError

STAND_IN_VARIABLE = "EDGE_SEARCH_CPU_CLASS"

_INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@dataclass(frozen=True)
class CpuFacts:
    """One CPU as the choices see it: its architecture and, on x86, its flags (None where unknown)."""

    machine: str
    flags: frozenset[str] | None
    stand_in: str | None = None  # the class name when these facts stand in for the real CPU's

    @property
    def x86(self) -> bool:
        return self.machine in ("x86_64", "amd64", "i686", "x86")

    @property
    def cpu_class(self) -> str:
        """amx, vnni, avx2, x86 (older) or the architecture's name (aarch64, ...)."""
        if not self.x86:
            return self.machine
        flags = self.flags or frozenset()
        if "amx_int8" in flags:
            return "amx"
        if _INT8_DOT_FLAGS & flags:
            return "vnni"
        return "avx2" if "avx2" in flags else "x86"

    def int8_kernels_saturate(self) -> bool:
        """Whether onnxruntime (and OpenVINO) run int8 matrix products here on AVX2 without VNNI, whose u8 x s8
        instruction (vpmaddubsw) adds pairs into saturating 16-bit sums: int8 graphs lose accuracy on such CPUs
        (measured on the trained DINOv2 ViT-S/14 fixture, AMD EPYC AVX2: min cosine 0.9948 against PyTorch,
        under the 0.995 gate, where VNNI machines pass it). VNNI/AMX widen to 32 bits first, as do Arm's dot
        products."""
        return self.x86 and self.flags is not None and not _INT8_DOT_FLAGS & self.flags

    def describe(self) -> str:
        """One line for logs and CI: the class, and the flags that decide it."""
        shown = sorted(f for f in (self.flags or ()) if f in _INT8_DOT_FLAGS | {"avx2", "avx512f", "amx_bf16"})
        origin = f"stand-in for {self.stand_in} ({STAND_IN_VARIABLE})" if self.stand_in else "this CPU"
        return f"CPU class {self.cpu_class} ({self.machine}; {' '.join(shown) or 'no x86 flags'}), {origin}"


_AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
# The stand-in classes (CONTRIBUTING.md "CPU classes"): the flags each class's choices depend on.
STAND_INS: dict[str, CpuFacts] = {
    "avx2": CpuFacts("x86_64", _AVX2, "avx2"),
    "vnni": CpuFacts("x86_64", _AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}, "vnni"),
    "amx": CpuFacts("x86_64", _AVX2 | {"avx512f", "avx512bw", "avx512_vnni", "amx_bf16", "amx_int8"}, "amx"),
    "aarch64": CpuFacts("aarch64", None, "aarch64"),
}


def default_threads() -> int:
    """The CPUs this process may use (cgroup/affinity aware), not the machine's core count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@functools.cache
def _real_cpu() -> CpuFacts:
    """This CPU, read once per process (opening a session asks on every cold query)."""
    import platform  # here: not every process that imports this module asks

    facts = CpuFacts(platform.machine().lower(), None)
    if not facts.x86:
        return facts
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return facts
    return CpuFacts(facts.machine, frozenset(flags))


def cpu_facts() -> CpuFacts:
    """The CPU facts the choices use: a stand-in class where EDGE_SEARCH_CPU_CLASS names one, else this CPU's."""
    name = os.environ.get(STAND_IN_VARIABLE, "").strip().lower()
    if not name:
        return _real_cpu()
    if name not in STAND_INS:
        raise UsageError(f"{STAND_IN_VARIABLE}={name} is not a CPU class; use one of {', '.join(STAND_INS)}.")
    return STAND_INS[name]


def real_cpu_facts() -> CpuFacts:
    """This CPU's own facts, whatever stands in for them: what the arithmetic of int8 kernels depends on."""
    return _real_cpu()


def int8_kernels_saturate() -> bool:
    """`CpuFacts.int8_kernels_saturate` for the CPU the choices see."""
    return cpu_facts().int8_kernels_saturate()
