"""Which int8 scheme: accuracy against PyTorch on real photos and speed against fp32, side by side.

    python -m benchmarks.int8_schemes --bundle DIR --model CHECKPOINT [--photos DIR ...]

`--bundle` is an fp32 bundle exported from `--model` (its `model.fp32.onnx` is the fused graph every scheme
quantizes). For each scheme: min / mean cosine of its embeddings against the PyTorch model's on every
photo, mean top-10 overlap with fp32's neighbours in the photo gallery, and images/s at batch 1 (one image
per call, as the runtime runs a dynamically quantized graph) with fp32 in the same rounds, alternating.
Used to choose `export/optimize.py`'s scheme; the figures are in README and the results folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import machine

SCHEMES: dict[str, dict] = {
    # name: quantize_dynamic options (the fused graph's MatMul / Attention / nodes to exclude)
    "matmul+attention per-tensor": dict(op_types=["MatMul", "Attention"], per_channel=False),
    "matmul+attention per-channel": dict(op_types=["MatMul", "Attention"], per_channel=True),
    "matmul per-channel (attention fp32)": dict(op_types=["MatMul"], per_channel=True),
    "matmul+attention per-channel, fc2 fp32": dict(op_types=["MatMul", "Attention"], per_channel=True, exclude="fc2"),
    "matmul+attention per-tensor, fc2 fp32": dict(op_types=["MatMul", "Attention"], per_channel=False, exclude="fc2"),
}


def _fc2_nodes(path: Path) -> list[str]:
    """The MLP output MatMuls (1536 -> 384 or 3072 -> 768): the layers with the widest activations."""
    import onnx

    model = onnx.load(str(path))
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul"
        and len(shapes.get(n.input[1], ())) == 2
        and shapes[n.input[1]][0] > shapes[n.input[1]][1]
    ]


def quantize(fused: Path, out: Path, op_types: list[str], per_channel: bool, exclude: str | None = None) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)
    nodes = _fc2_nodes(fused) if exclude == "fc2" else []
    quantize_dynamic(
        str(fused),
        str(out),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=op_types,
        per_channel=per_channel,
        nodes_to_exclude=nodes,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(sess, pixels: np.ndarray, batch: int = 1) -> np.ndarray:
    name = sess.get_inputs()[0].name
    out = np.concatenate([sess.run(None, {name: pixels[i : i + batch]})[0] for i in range(0, len(pixels), batch)])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def top10_overlap(reference: np.ndarray, other: np.ndarray, k: int = 10) -> float:
    """Mean share of each photo's k nearest neighbours (itself excluded) that both embeddings agree on."""

    def neighbours(v):
        scores = v @ v.T
        np.fill_diagonal(scores, -np.inf)
        return np.argsort(-scores, axis=1)[:, :k]

    a, b = neighbours(reference), neighbours(other)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))


def pixels_of(checkpoint: Path, photos: list[Path]) -> np.ndarray:
    from PIL import Image
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(checkpoint, use_fast=False)
    arrays = []
    for path in photos:
        with Image.open(path) as image:
            image.draft("RGB", (512, 512))
            arrays.append(processor(images=image.convert("RGB"), return_tensors="np")["pixel_values"][0])
    return np.stack(arrays).astype(np.float32)


def torch_reference(checkpoint: Path, pixels: np.ndarray) -> np.ndarray:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(checkpoint).eval()
    chunks = []
    with torch.no_grad():
        for i in range(0, len(pixels), 16):
            chunks.append(model(pixel_values=torch.from_numpy(pixels[i : i + 16])).last_hidden_state[:, 0].numpy())
    out = np.concatenate(chunks)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def speed(paths: dict[str, Path], pixels: np.ndarray, threads: int, rounds: int, images: int) -> dict[str, float]:
    """Images/s at batch 1, every graph once per round in turn, median over rounds."""
    sessions = {name: session(path, threads) for name, path in paths.items()}
    sample = pixels[:images]
    for sess in sessions.values():
        embed(sess, sample[:2])
    seen: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, sess in sessions.items():
            started = time.perf_counter()
            embed(sess, sample)
            seen[name].append(len(sample) / (time.perf_counter() - started))
    return {name: float(np.median(values)) for name, values in seen.items()}


def measure_graphs(
    graphs: dict[str, Path], pixels: np.ndarray, reference: np.ndarray, threads: int, rounds: int, images: int
) -> list[dict]:
    """One row per graph: accuracy against PyTorch and fp32's neighbours, then speed against fp32."""
    rows = []
    fp32 = embed(session(graphs["fp32"], threads), pixels)
    for name, path in graphs.items():
        vectors = embed(session(path, threads), pixels)
        cos = (vectors * reference).sum(axis=1)
        rows.append(
            {
                "scheme": name,
                "min_cosine": float(cos.min()),
                "mean_cosine": float(cos.mean()),
                "top10_overlap_vs_fp32": top10_overlap(fp32, vectors),
                "bytes": path.stat().st_size,
            }
        )
    rates = speed(graphs, pixels, threads, rounds, images)
    for row in rows:
        row["images_per_s_batch1"] = rates[row["scheme"]]
        row["x_fp32"] = rates[row["scheme"]] / rates["fp32"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--photos", type=Path, nargs="+", required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--speed-images", type=int, default=16)
    parser.add_argument("--schemes", nargs="*", default=list(SCHEMES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    photos = sorted(
        p for folder in args.photos for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
    )[: args.limit]
    pixels = pixels_of(args.model, photos)
    reference = torch_reference(args.model, pixels)
    fused = args.bundle / "model.fp32.onnx"
    with tempfile.TemporaryDirectory(prefix="int8-schemes-") as work:  # the quantized graphs
        graphs = {"fp32": fused}
        for name in args.schemes:
            graphs[name] = Path(work) / f"{len(graphs)}.onnx"
            quantize(fused, graphs[name], **SCHEMES[name])
        rows = measure_graphs(graphs, pixels, reference, args.threads, args.rounds, args.speed_images)
    report = {
        "machine": machine(),
        "bundle": str(args.bundle),
        "model": str(args.model),
        "photos": len(photos),
        "threads": args.threads,
        "rounds": args.rounds,
        "schemes": rows,
    }
    print(f"{len(photos)} photos; flags: {', '.join(report['machine']['cpu_flags'])}")
    print("| scheme | min cos vs PyTorch | mean cos | top-10 overlap vs fp32 | img/s batch 1 | × fp32 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['scheme']} | {row['min_cosine']:.4f} | {row['mean_cosine']:.5f} | {row['top10_overlap_vs_fp32']:.3f} | "
            f"{row['images_per_s_batch1']:.1f} | {row['x_fp32']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
