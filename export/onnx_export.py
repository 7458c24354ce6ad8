"""Trace the encoder into an ONNX graph that outputs the CLS embedding directly.

The graph takes `pixel_values` float32 [batch, 3, H, W] and returns `embedding` float32
[batch, hidden] = last_hidden_state[:, 0]: the runtime never copies the token sequence.
Self-attention is swapped for `FusableSelfAttention` first so that onnxruntime fuses it, and the last
layer runs for the CLS token only (`cls_only.py`).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from .defaults import DEFAULT_OPSET  # noqa: F401  (re-exported)
from .attention import fold_layer_scale, make_fusable
from .cls_only import ClsOnlyEncoder

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "embedding"


def exportable(encoder: nn.Module) -> tuple[nn.Module, int]:
    """A copy of the encoder with fusable attention, LayerScale folded and a CLS-only last layer.

    Returns it and the number of attentions swapped.
    """
    patched = copy.deepcopy(encoder).eval()
    swapped = make_fusable(patched)
    fold_layer_scale(patched)
    return ClsOnlyEncoder(patched).eval(), swapped


def export_onnx(encoder: nn.Module, path: Path, *, height: int, width: int, opset: int = DEFAULT_OPSET) -> int:
    """Write the fp32 graph to `path` with TorchScript tracing; returns how many attentions were swapped.

    TorchScript tracing (`dynamo=False`) rather than the dynamo exporter: its graph is the one
    onnxruntime's transformer optimizer has patterns for, and it is the faster of the two here.
    """
    module, swapped = exportable(encoder)
    dummy = torch.zeros(2, 3, height, width, dtype=torch.float32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return swapped
