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

from .attention import fold_layer_scale, make_fusable
from .cls_only import ClsOnlyEncoder
from .defaults import DEFAULT_OPSET

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


def export_onnx(encoder: nn.Module, path: Path, *, height: int, width: int, opset: int = DEFAULT_OPSET,
                rewrite: bool = True) -> int:
    """Write the fp32 graph to `path` with TorchScript tracing; returns how many attentions were swapped.

    TorchScript tracing (`dynamo=False`) rather than the dynamo exporter: its graph is the one
    onnxruntime's transformer optimizer has patterns for, and it is the faster of the two here.
    `rewrite` False (CLIP's image tower): the module is exported as it is.
    """
    module, swapped = exportable(encoder) if rewrite else (encoder, 0)
    dummy = torch.zeros(2, 3, height, width, dtype=torch.float32)
    _trace(module, (dummy,), path, [INPUT_NAME], opset)
    return swapped


def export_text_onnx(tower: nn.Module, path: Path, *, context_length: int, opset: int = DEFAULT_OPSET) -> None:
    """The text tower: `input_ids`, `attention_mask` int64 [batch, context_length] -> `embedding`."""
    ids = torch.zeros(2, context_length, dtype=torch.int64)
    ids[:, 0], ids[:, 1] = 1, 2  # any ids: the graph pools wherever the end-of-text token is
    mask = torch.ones(2, context_length, dtype=torch.int64)
    _trace(tower, (ids, mask), path, ["input_ids", "attention_mask"], opset)


def _trace(module: nn.Module, inputs: tuple, path: Path, input_names: list[str], opset: int) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={**{name: {0: "batch"} for name in input_names}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
