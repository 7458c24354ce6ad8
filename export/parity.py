"""Compare every exported graph with the PyTorch model it came from, and fail the export on drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .onnx_export import INPUT_NAME
from .synthetic import parity_batch

# Minimum cosine similarity between ONNX (CPU provider) and PyTorch CLS embeddings, per precision.
THRESHOLDS = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.995, "int8-static": 0.995}


def parity_inputs(processor: Any, count: int = 8) -> np.ndarray:
    """Photo-like images through the model's own processor: the pixels the reference pipeline sees."""
    return processor(images=parity_batch(count), return_tensors="np")["pixel_values"].astype(np.float32)


def openvino_cls(path: Path, pixels: np.ndarray) -> np.ndarray:
    """The graph as the runtime runs it on OpenVINO's CPU (the int8-static graph is made for it: its MLP
    activations are quantized by OpenVINO at run time), one image per call."""
    from edge_search.runtime.model.openvino_session import open_openvino
    from edge_search.runtime.options import OpenVinoOptions

    session = open_openvino(path, "int8-static", OpenVinoOptions(cache=False), threads=None)
    return np.concatenate([session.run(pixels[i : i + 1]) for i in range(len(pixels))])


def onnx_cls(path: Path, inputs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = inputs if isinstance(inputs, dict) else {INPUT_NAME: inputs}
    return session.run(None, feeds)[0].astype(np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def measure(
    precision: str, path: Path, reference: np.ndarray, inputs: np.ndarray | dict[str, np.ndarray], unit: str = "images"
) -> dict[str, float]:
    """Cosines of the graph's outputs against the PyTorch reference; `inputs` pixels or text feeds."""
    if precision == "int8-static":
        assert isinstance(inputs, np.ndarray)
        cos = cosines(openvino_cls(path, inputs), reference)
    else:
        cos = cosines(onnx_cls(path, inputs), reference)
    return {
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "threshold": THRESHOLDS[precision],
        unit: len(cos),
    }


def agreement(embeddings: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How close two sets of embeddings of the same inputs are: min and mean cosine."""
    cos = cosines(embeddings, reference)
    return {"min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6)}


def passes(figures: dict[str, float]) -> bool:
    return figures["min_cosine"] >= figures["threshold"]
