"""What this machine lets the process use."""

from __future__ import annotations

import functools
import os


def default_threads() -> int:
    """The CPUs this process may use (cgroup/affinity aware), not the machine's core count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


_INT8_DOT_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


def _x86() -> bool:
    import platform  # here: not every process that imports this module asks

    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


@functools.cache
def _x86_flags() -> frozenset[str] | None:
    """This x86 CPU's flags from /proc/cpuinfo, read once per process (opening a session asks on every cold
    query); None on another architecture or where they cannot be read."""
    if not _x86():
        return None
    try:
        with open("/proc/cpuinfo") as handle:
            return frozenset(next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), []))
    except OSError:
        return None


def int8_kernels_saturate() -> bool:
    """Whether onnxruntime (and OpenVINO) run int8 matrix products here on AVX2 without VNNI, whose u8 x s8
    instruction (vpmaddubsw) adds pairs into saturating 16-bit sums: int8 graphs lose accuracy on such CPUs
    (measured on the trained DINOv2 ViT-S/14 fixture, AMD EPYC AVX2: min cosine 0.9948 against PyTorch, under
    the 0.995 gate, where VNNI machines pass it). VNNI/AMX widen to 32 bits first, as do Arm's dot products."""
    flags = _x86_flags()
    return flags is not None and not _INT8_DOT_FLAGS & flags


def int8_dot_products() -> bool:
    """Whether this CPU has int8 dot-product instructions that OpenVINO's int8-static graph is measured faster with
    (x86 VNNI or AMX). Elsewhere `auto` keeps onnxruntime's int8 for long jobs too: on AVX2 alone OpenVINO indexed
    at 0.76x its speed (benchmarks/threads.py); on Arm it is not measured."""
    return _x86() and not int8_kernels_saturate()
