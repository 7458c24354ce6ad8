"""The `int8-static` graph for OpenVINO: NNCF post-training quantization calibrated on photos (the user's, or the
ones shipped with the package).

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

SmoothQuant moves activation outliers into the weights by per-channel scales fitted to the calibration photos:
NNCF's strength for MatMuls (alpha 0.95, tuned on language models) fits them so closely that a photo unlike the
calibration set overflows the fixed ranges. With the 15 shipped photos, on the trained fixture (parity gate / 66
Debian photos it never saw, min cosine to fp32): alpha 0.95 0.968 / 0.973 (rejected), 0.75 0.985 / 0.995
(rejected), 0.5 0.997 / 0.9925 (the SmoothQuant paper's default, kept); SmoothQuant off 0.994 / 0.892.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from PIL import Image, ImageOps

# Calibration: NNCF's statistics settle within a few dozen photos; more only lengthens the export. A folder with
# fewer photos than CALIBRATION_LIMIT also gives each photo's crops and mirror image (`views`), up to
# CALIBRATION_INPUTS in all: measured on the trained DINOv2 ViT-S/14 fixture (SmoothQuant at NNCF's default), 22
# photos alone were rejected by the parity gate (min cosine 0.992), the same photos in 7 views passed (0.997).
CALIBRATION_LIMIT = 64
CALIBRATION_INPUTS = 128
CALIBRATION_MINIMUM = 8
SMOOTH_QUANT_ALPHA = 0.5  # see the module docstring
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Photos shipped with the export package (scikit-image's public-domain and CC0 samples, see CREDITS.md there):
# what calibrates when no folder is given, or tops up a folder with fewer than CALIBRATION_MINIMUM photos.
SHIPPED_PHOTOS = Path(__file__).resolve().parent / "calibration"
SHIPPED_LABEL = "the photos shipped with edge-search"

SCHEME = {
    "weights": "int8 per output channel",
    "activations": "attention: int8 per tensor, static (ranges calibrated on photos); MLP: int8 per token "
    "group, at run time (OpenVINO)",
    "engine": "openvino",
}


@dataclass(frozen=True)
class Calibration:
    """The pixels int8-static is calibrated on, and where they came from (recorded in the manifest)."""

    pixels: np.ndarray
    photos: int  # distinct photos; `pixels` may hold several views of each
    unreadable: int
    source: str

    def record(self) -> dict[str, Any]:
        return {
            "calibration_photos": self.photos,
            "calibration_inputs": len(self.pixels),
            "calibration_unreadable": self.unreadable,
            "calibration_source": self.source,
        }


def views(image: Image.Image) -> list[Image.Image]:
    """The photo, then its centre and four quarters at half size, then its mirror image: the crops reach the
    close-up statistics (textures, faces, small objects) a small set of whole photos lacks."""
    width, height = image.size
    half_w, half_h = width // 2, height // 2
    corners = [(width // 4, height // 4), (0, 0), (half_w, 0), (0, half_h), (half_w, half_h)]
    crops = [image.crop((x, y, x + half_w, y + half_h)) for x, y in corners]
    return [image, *crops, ImageOps.mirror(image)]


def _read_photos(directory: Path, limit: int) -> tuple[list[Image.Image], int]:
    """Up to `limit` photos from `directory` (recursively, evenly spread over the sorted list), as RGB; how many
    were unreadable."""
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
    return images, skipped


def calibration_pixels(processor, directory: Path | None, limit: int = CALIBRATION_LIMIT) -> Calibration:
    """The calibration inputs through the model's own processor: up to `limit` photos from `directory`, topped up
    with the shipped photos when it holds fewer than CALIBRATION_MINIMUM readable ones (or is None); with fewer
    than `limit` photos each also gives its views, round-robin up to CALIBRATION_INPUTS inputs."""
    images: list[Image.Image] = []
    skipped = 0
    source = SHIPPED_LABEL
    if directory is not None:
        directory = Path(directory).expanduser()  # a directory: ExportPlan.checked said so before the export began
        images, skipped = _read_photos(directory, limit)
        source = str(directory)
    if len(images) < CALIBRATION_MINIMUM:
        shipped, _ = _read_photos(SHIPPED_PHOTOS, limit)
        if directory is not None:
            source = f"{directory} ({len(images)} readable photos) + {SHIPPED_LABEL}"
        images += shipped
    inputs = images
    if len(images) < limit:
        per_photo = [views(image) for image in images]
        inputs = [view[i] for i in range(len(per_photo[0])) for view in per_photo][:CALIBRATION_INPUTS]
    pixels = processor(images=inputs, return_tensors="np")["pixel_values"].astype(np.float32)
    return Calibration(pixels=pixels, photos=len(images), unreadable=skipped, source=source)


def to_int8_static(raw: Path, out: Path, calibration: np.ndarray, input_name: str) -> None:
    """Quantize the plain (unfused) fp32 graph `raw` with NNCF, calibrated on `calibration` pixels, then
    release the MLP activations to run-time quantization (see the module docstring)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedSmoothQuantParameters
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
                activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
                smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA),
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
