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
from typing import Any

import torch
from torch import nn

from .attention import fold_layer_scale, make_fusable
from .cls_only import ClsOnlyEncoder
from .defaults import DEFAULT_OPSET

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "embedding"


def exportable(encoder: nn.Module, height: int, width: int) -> nn.Module:
    """A copy of the encoder with fusable attention, LayerScale folded, position embeddings fixed for
    `height` x `width` and a CLS-only last layer."""
    patched = copy.deepcopy(encoder).eval()
    make_fusable(patched)
    fold_layer_scale(patched)
    fix_positions(patched, height, width)
    return ClsOnlyEncoder(patched).eval()


def fix_positions(model: nn.Module, height: int, width: int) -> None:
    """Compute the position embeddings for the bundle's one input size now, so the graph holds a constant.

    DINOv2 checkpoints are trained at 518 px (a 37x37 grid) and resample their grid to the input's in every
    forward pass (bicubic). Traced, that is a `Resize` node onnxruntime refuses ("'Cubic' mode only
    supports ..."); the bundle's input size is fixed, so transformers' own resampling runs once, here, and
    its result is the graph's constant: the same numbers, no `Resize`.
    """
    embeddings: Any = getattr(model, "embeddings", None)
    interpolate = getattr(embeddings, "interpolate_pos_encoding", None)
    positions = getattr(embeddings, "position_embeddings", None)
    patch = getattr(getattr(model, "config", None), "patch_size", None)
    if interpolate is None or not isinstance(positions, torch.Tensor) or not patch:
        return
    tokens = 1 + (height // patch) * (width // patch)
    with torch.no_grad():
        fixed = (
            interpolate(torch.zeros(1, tokens, positions.shape[-1], dtype=positions.dtype), height, width)
            .detach()
            .clone()
        )
    embeddings.interpolate_pos_encoding = lambda _embeddings, _height, _width: fixed


def export_onnx(
    encoder: nn.Module, path: Path, *, height: int, width: int, opset: int = DEFAULT_OPSET, rewrite: bool = True
) -> None:
    """Write the fp32 graph to `path` with TorchScript tracing.

    TorchScript tracing (`dynamo=False`) rather than the dynamo exporter: its graph is the one
    onnxruntime's transformer optimizer has patterns for, and it is the faster of the two here.
    `rewrite` False (CLIP's image tower): the module is exported as it is.
    """
    module = exportable(encoder, height, width) if rewrite else encoder
    dummy = torch.zeros(2, 3, height, width, dtype=torch.float32)
    _trace(module, (dummy,), path, [INPUT_NAME], opset)


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
