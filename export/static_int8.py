"""The `int8-static` graph for OpenVINO: NNCF post-training quantization calibrated on the user's photos.

Measured on the trained DINOv2 ViT-S/14 fixture (calibrated on 64 of Debian's wallpaper photographs, checked on
70 other photos against PyTorch), a fully static graph (every MatMul input quantized per tensor with ranges
fixed at export) is fast in OpenVINO (2.2x onnxruntime fp32 at batch 1 on an AVX-512 VNNI Xeon) but loses the
picture: min cosine 0.88 (NNCF's defaults: 0.75). The culprit is the MLP: trained ViTs have a few tokens with
activations hundreds of times larger than the rest, and one range per tensor fixed in advance cannot hold them
and the ordinary tokens together. So the MLP's two MatMuls keep their int8 weights but not the fixed activation
ranges: OpenVINO's CPU plugin quantizes their activations at run time per group of 32 values of one token
(its dynamic quantization of int8-weight layers), which follows each token's own range and depends on no other
image in the batch. Attention projections and the attention products stay fully static. Min cosine 0.996.

Ranges: the global minimum and maximum over the calibration photos (NNCF's `MINMAX`), not its default mean of
per-image extremes, which clips the photos with the largest activations. The patch-embedding Conv stays fp32
(as in the dynamic int8 graph: quantizing it cost accuracy for no speed).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import onnx

from .errors import ExportUsageError

# Calibration photos: NNCF's statistics settle within a few dozen; more only lengthens the export.
CALIBRATION_LIMIT = 64
CALIBRATION_MINIMUM = 8
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

SCHEME = {
    "weights": "int8 per output channel",
    "activations": "attention: int8 per tensor, static (ranges calibrated on photos); MLP: int8 per token "
    "group, at run time (OpenVINO)",
    "engine": "openvino",
}


def calibration_pixels(processor, directory: Path, limit: int = CALIBRATION_LIMIT) -> tuple[np.ndarray, int]:
    """Up to `limit` photos from `directory` (recursively, evenly spread over the sorted list) through the
    model's own processor; unreadable files are skipped. Returns the pixels and how many were skipped."""
    from PIL import Image

    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ExportUsageError(f"--calibration-photos {directory} is not a directory.")
    found = sorted(p for p in directory.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    step = max(1, len(found) // limit)
    images: list[Image.Image] = []
    skipped = 0
    for path in found[::step]:
        if len(images) == limit:
            break
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError):
            skipped += 1
    if len(images) < CALIBRATION_MINIMUM:
        raise ExportUsageError(
            f"--calibration-photos {directory} holds {len(images)} readable photos; the int8-static graph is "
            f"calibrated on at least {CALIBRATION_MINIMUM} (up to {limit}) photos like the ones you will search."
        )
    pixels = processor(images=images, return_tensors="np")["pixel_values"].astype(np.float32)
    return pixels, skipped


def to_int8_static(raw: Path, out: Path, calibration: np.ndarray, input_name: str) -> None:
    """Quantize the plain (unfused) fp32 graph `raw` with NNCF, calibrated on `calibration` pixels, then
    release the MLP activations to run-time quantization (see the module docstring)."""
    import nncf
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    nncf.set_log_level(logging.ERROR)
    dataset = nncf.Dataset(list(calibration), lambda pixels: {input_name: pixels[None]})
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars on stdout
        quantized = nncf.quantize(
            onnx.load(str(raw)),
            dataset,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(types=["Conv"]),
            advanced_parameters=nncf.AdvancedQuantizationParameters(
                activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
            ),
        )
    release_mlp_activations(quantized)
    onnx.save(quantized, str(out))


def _weight_shape(
    name: str, initializers: dict[str, onnx.TensorProto], producers: dict[str, onnx.NodeProto]
) -> tuple[int, ...] | None:
    """The shape of a MatMul's constant weight, seen through its DequantizeLinear; None for an activation."""
    node = producers.get(name)
    if node is not None and node.op_type == "DequantizeLinear":
        name = node.input[0]
    tensor = initializers.get(name)
    return tuple(tensor.dims) if tensor is not None else None


def release_mlp_activations(model: onnx.ModelProto) -> int:
    """Remove the activation QuantizeLinear/DequantizeLinear pair in front of every MatMul whose weight matrix
    is not square (the MLP's expansion and projection; attention projections are square). Their int8 weights
    stay. Returns how many pairs were removed."""
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    bypass: dict[str, str] = {}  # a DequantizeLinear's output -> the QuantizeLinear's input
    dropped: set[int] = set()
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        shape = _weight_shape(node.input[1], initializers, producers)
        if shape is None or len(shape) != 2 or shape[0] == shape[1]:
            continue
        dequantize = producers.get(node.input[0])
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        quantize = producers.get(dequantize.input[0])
        if quantize is None or quantize.op_type != "QuantizeLinear":
            continue
        bypass[dequantize.output[0]] = quantize.input[0]
        dropped.add(id(dequantize))
    kept = [node for node in model.graph.node if id(node) not in dropped]
    for node in kept:
        for index, name in enumerate(node.input):
            if name in bypass:
                node.input[index] = bypass[name]
    used = {name for node in kept for name in node.input} | {output.name for output in model.graph.output}
    kept = [node for node in kept if node.op_type != "QuantizeLinear" or node.output[0] in used]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return len(bypass)
