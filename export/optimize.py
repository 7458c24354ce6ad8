"""Fuse the fp32 graph with onnxruntime's transformer optimizer, then derive fp16 and int8 from it."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import onnx

from .merged_attention import fuse_merged_attention, has_attention_bias

# The fused operators worth recording (what the optimizer reports, minus the zeros).
FUSED_OP_TYPES = (
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "Gelu",
    "FastGelu",
    "QAttention",
    "DynamicQuantizeMatMul",
    "MatMulInteger",
)


# What dynamic int8 quantizes; see `to_int8`.
INT8_OP_TYPES = ("MatMul", "Attention")


def fused_op_counts(path: Path) -> dict[str, int]:
    counts = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    return {op: counts[op] for op in FUSED_OP_TYPES if counts[op]}


def _quiet() -> None:
    for name in ("onnxruntime.transformers", "onnxruntime.quantization", "fusion", "onnx_model"):
        logging.getLogger(name).setLevel(logging.ERROR)


def fuse(raw: Path, out: Path, *, num_heads: int, hidden_size: int, model_type: str = "vit", merged: bool = False):
    """Fused fp32 graph (Attention, SkipLayerNormalization, BiasGelu). Returns the optimizer's model. `merged`: a
    token-merging graph, whose attention onnxruntime's fusion misses (`merged_attention.py` fuses it)."""
    from onnxruntime.transformers.optimizer import optimize_model

    _quiet()
    # opt_level=0: fusions from the Python optimizer only; onnxruntime applies its own graph optimizations
    # when the session loads, and a graph saved after level 1+ is tied to the provider it was made for.
    model = optimize_model(
        str(raw), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size, opt_level=0, use_gpu=False
    )
    if merged:
        fuse_merged_attention(model, num_heads=num_heads, hidden_size=hidden_size)
    model.save_model_to_file(str(out))
    return model


def to_fp16(fused_model, out: Path) -> None:
    """fp16 weights and compute, float32 inputs and outputs (the runtime's contract)."""
    fused_model.convert_float_to_float16(keep_io_types=True)
    fused_model.save_model_to_file(str(out))


def to_int8(fused: Path, out: Path, *, unsigned_weights: bool = False) -> None:
    """Dynamic int8 quantization of the fused graph's MatMuls and Attention, weights int8 per output channel.

    `unsigned_weights`: uint8 weights instead, for an exporting CPU whose u8 x s8 kernels saturate (AVX2 without
    VNNI, `host.int8_kernels_saturate`): there the parity gate would measure the saturation, not the
    quantization. Measured on the trained DINOv2 ViT-S/14 fixture on an AMD EPYC (AVX2 only), min cosine to fp32
    over its 22 photos: int8 weights 0.9968, int8 with a 7-bit range 0.9888, uint8 0.9975; speed against fp32
    1.27x, 1.21x and 1.07x. A bundle exported on a VNNI machine keeps int8 weights, the fast ones there.

    Per channel, not per tensor: trained transformers have weight columns of very different ranges, and one
    scale per matrix rounds the small ones away. On the trained DINOv2 ViT-S/14 fixture (153 real photos,
    against PyTorch) per tensor gave min cosine 0.908, per channel 0.996, at the same speed (1.73x fp32 on
    an AVX-512 VNNI Xeon, batch 1); random weights hide this (ViT-B/16 random: 0.9975 either way).
    Only those ops: the patch-embedding Conv stays fp32. onnxruntime's ConvInteger is no faster than its fp32
    Conv (4% of the int8 run vs ~1.5% as fp32; whole graph within noise, 1-3% faster, on AVX2), and the
    quantized patch embedding cost accuracy (ViT-B/16 parity min cosine 0.9959 with it, 0.9975 without).
    Static (calibrated QDQ) quantization was measured too and not kept: onnxruntime runs the QDQ MatMuls
    as weight-only MatMulNBits in fp32, 0.72x the fp32 graph's speed. `DefaultTensorType=FLOAT` is needed
    because the fused contrib ops have no type inference the quantizer can use.

    An Attention with an `attention_bias` (token merging's proportional attention) stays fp32: the quantizer's
    `QAttention` has no such input and would drop the bias. Measured (ViT-B/16 merging 8, AVX2): that graph is
    also faster than quantizing the same attention unfused (1.34x vs 1.13x the unmerged int8 graph).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _quiet()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns through the root logger about pre-processing
    try:
        quantize_dynamic(
            str(fused),
            str(out),
            weight_type=QuantType.QUInt8 if unsigned_weights else QuantType.QInt8,
            op_types_to_quantize=list(INT8_OP_TYPES),
            per_channel=True,
            nodes_to_exclude=[node.name for node in onnx.load(str(fused)).graph.node if has_attention_bias(node)],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
