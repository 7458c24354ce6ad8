"""TensorRT through onnxruntime's TensorRT execution provider: where its engines are cached and under which key.

Building an engine takes minutes on a small GPU box, so it is built once and cached in the user cache, in a folder
named by everything that makes an engine valid: the bundle's graph (its embedding identity and precision), the
onnxruntime and TensorRT versions, and the GPU with its driver. A changed bundle, upgrade or card gets a folder
of its own, so a stale engine is never loaded. The engine computes in fp16 (`trt_fp16_enable`) from the
bundle's fp32 graph; nodes TensorRT cannot take run on CUDA, then the CPU, inside the same session.

Nothing here has run on a GPU yet (no machine with one was available): the plan, the keys and the refusals are
tested; the first GPU run decides whether the fused graph's contrib operators leave TensorRT enough of it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_search.runtime.files import cache_dir
from edge_search.runtime.model.providers import TENSORRT

# Distributions that carry TensorRT's libraries, first found wins ("system" where it came with JetPack).
_TENSORRT_DISTS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-libs", "tensorrt-cu12-libs")


def tensorrt_version() -> str:
    import importlib.metadata  # here: ~20 ms that a cold query on the CPU need not pay

    for dist in _TENSORRT_DISTS:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "system"


def gpu_identity(device_id: int = 0) -> str:
    """'NVIDIA H200, driver 580.65' from nvidia-smi; 'unknown GPU' where it cannot tell (then the key still
    changes with the onnxruntime and TensorRT versions, not with the card)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "unknown GPU"
    try:
        out = subprocess.run(
            [smi, f"--id={device_id}", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"
    name, _, driver = out.partition(",")
    return f"{name.strip()}, driver {driver.strip()}" if name.strip() else "unknown GPU"


@dataclass(frozen=True)
class EngineKey:
    """What makes a cached engine valid for a session."""

    bundle_identity: str
    precision: str
    onnxruntime: str
    tensorrt: str
    gpu: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:20]

    def folder(self, root: Path | None = None) -> Path:
        return (root or cache_dir() / "tensorrt") / self.digest()


def engine_key(bundle_identity: str, precision: str, onnxruntime_version: str, device_id: int = 0) -> EngineKey:
    return EngineKey(bundle_identity, precision, onnxruntime_version, tensorrt_version(), gpu_identity(device_id))


def has_engine(folder: Path) -> bool:
    """Whether an engine was built into `folder` before (the next session loads it instead of building)."""
    return folder.is_dir() and any(p.suffix == ".engine" for p in folder.iterdir())


def provider(folder: Path, device_id: int = 0) -> tuple[str, dict[str, Any]]:
    """The TensorRT provider with its options: fp16 engines, engine and timing caches kept in `folder`."""
    return TENSORRT, {
        "device_id": device_id,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(folder),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(folder),
    }


def write_key(folder: Path, key: EngineKey) -> None:
    """The key beside the engines, for a person looking into the cache."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key.json").write_text(json.dumps(key.__dict__, indent=2) + "\n")
