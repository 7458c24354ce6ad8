"""The CPU's own ceilings through onnxruntime: what one large fp32 MatMul and one int8 MatMulInteger
reach on this machine, with the threads the runtime uses. A graph's speed is then reported as a
fraction of its ceiling, which compares across machines (AVX2 only, AVX-512, VNNI) where images/s
alone does not.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

# The shape of a ViT-B/16 MLP matmul for a batch of 8: (8 x 197 tokens) x 768 @ 768 x 3072.
M, K, N = 8 * 197, 768, 3072
# ViT-B/16 at 224 px: 17.6 G multiply-adds = 35.2 GFLOP per image (the CLS-only last layer saves ~7%,
# which is not subtracted: fractions are slightly conservative).
VIT_B16_GFLOP = 35.2


def _matmul_model(kind: str) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "fp32":
        weight = numpy_helper.from_array(rng.normal(size=(K, N)).astype(np.float32), "w")
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])]
        output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])
        initializers = [weight]
    else:  # what dynamic int8 runs: uint8 activations x int8 weights -> int32
        weight = numpy_helper.from_array(rng.integers(-127, 128, size=(K, N)).astype(np.int8), "w")
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
        inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, [M, K])]
        output = helper.make_tensor_value_info("y", TensorProto.INT32, [M, N])
        initializers = [weight]
    graph = helper.make_graph([node], kind, inputs, [output], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def ceilings(threads: int, rounds: int = 20) -> dict[str, float]:
    """{"fp32_gflops": ..., "int8_gops": ...}: the best sustained rate of each, median of `rounds` runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    result = {}
    for kind, feed in (
        ("fp32", np.random.default_rng(1).normal(size=(M, K)).astype(np.float32)),
        ("int8", np.random.default_rng(1).integers(0, 256, size=(M, K)).astype(np.uint8)),
    ):
        session = ort.InferenceSession(_matmul_model(kind), options, providers=["CPUExecutionProvider"])
        session.run(None, {"x": feed})
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            session.run(None, {"x": feed})
            times.append(time.perf_counter() - started)
        rate = 2 * M * K * N / statistics.median(times) / 1e9
        result["fp32_gflops" if kind == "fp32" else "int8_gops"] = round(rate, 1)
    return result


def fraction_of_ceiling(images_per_s: float, precision: str, limits: dict[str, float], gflop_per_image: float) -> float:
    """How much of the matching ceiling a graph reaches (fp16 on a CPU is held against fp32's)."""
    ceiling = limits["int8_gops"] if precision == "int8" else limits["fp32_gflops"]
    return round(images_per_s * gflop_per_image / ceiling, 3)
