"""What every benchmark shares: where results and caches go, the machine a figure was measured on, and the
random-weight bundle the speed sections run."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


# What decides int8 and fp32 kernel speed: AVX2 only, AVX-512, and the int8 dot-product units (VNNI, AMX).
CPU_FLAGS_THAT_MATTER = {
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
}


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    import onnxruntime as ort

    flags = next(
        (set(line.split(":", 1)[1].split()) for line in open("/proc/cpuinfo") if line.startswith("flags")), set()
    )
    return {
        "cpu": cpu,
        "cpu_flags": sorted(flags & CPU_FLAGS_THAT_MATTER),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "openvino": _version_of("openvino"),
        "available_providers": ort.get_available_providers(),
    }


def _version_of(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def default_bundle(quick: bool, merge_tokens: int = 0) -> tuple[Path, Path]:
    """A random-weight checkpoint (seeded) and the bundle exported from it, made once and cached.

    Tiny ViT for --quick, ViT-B/16 (google/vit-base-patch16-224's architecture) otherwise. The original
    pipeline loads the same checkpoint, so both sides run the same weights. `merge_tokens`: the bundle
    exported with that much token merging, from the same checkpoint.
    """
    from edge_search.export.pipeline import export_bundle

    name = "tiny-vit-random" if quick else "vit-b16-random"
    checkpoint, out = CACHE / f"{name}-checkpoint", CACHE / name
    if merge_tokens:
        merged = CACHE / f"{name}-tome{merge_tokens}"
        if not (merged / "manifest.json").exists():
            export_bundle(model=str(default_bundle(quick)[1]), out=merged, force=True, merge_tokens=merge_tokens)
        return merged, checkpoint
    if (out / "manifest.json").exists() and (checkpoint / "config.json").exists():
        return out, checkpoint
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    if quick:
        config = ViTConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            image_size=64,
            patch_size=16,
        )
        processor = ViTImageProcessor(size={"height": 64, "width": 64})
    else:
        config, processor = ViTConfig(), ViTImageProcessor()  # the defaults are ViT-B/16 at 224 px, mean = std = 0.5
    ViTModel(config, add_pooling_layer=False).save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    export_bundle(model=str(checkpoint), out=out, force=True)
    return out, checkpoint


def section_main(prog: str, doc: str, measure, markdown) -> None:
    """`python -m benchmarks.SECTION [--quick] [--json FILE]`: one section alone, its tables printed."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {"machine": machine(), **measure(args.quick)}
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
