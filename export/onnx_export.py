"""Export the encoder, through optimum's ONNX exporter, as a graph that outputs the CLS embedding directly.

The graph takes `pixel_values` float32 [batch, 3, H, W] and returns `embedding` float32
[batch, hidden] = last_hidden_state[:, 0]: the runtime never copies the token sequence.
Self-attention is swapped for `FusableSelfAttention` first so that onnxruntime fuses it, and the last
layer runs for the CLS token only (`cls_only.py`); with token merging, every block merges tokens
(`token_merging.py`).
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
from .token_merging import TokenMergingEncoder

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "embedding"


def exportable(encoder: nn.Module, height: int, width: int, merge_tokens: int = 0) -> nn.Module:
    """A copy of the encoder with fusable attention, LayerScale folded, position embeddings fixed for
    `height` x `width` and a CLS-only last layer; `merge_tokens` > 0: merging that many tokens per block."""
    patched = copy.deepcopy(encoder).eval()
    make_fusable(patched)
    fold_layer_scale(patched)
    fix_positions(patched, height, width)
    if merge_tokens:
        return TokenMergingEncoder(patched, merge_tokens).eval()
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
    encoder: nn.Module,
    path: Path,
    *,
    height: int,
    width: int,
    opset: int = DEFAULT_OPSET,
    rewrite: bool = True,
    merge_tokens: int = 0,
) -> None:
    """Write the fp32 graph to `path` with optimum's ONNX exporter.

    `rewrite` False (CLIP's image tower): the module is exported as it is. The image config is the
    encoder's (CLIP: its vision config): optimum reads the channel count from it; the size is the bundle's.
    """
    module = exportable(encoder, height, width, merge_tokens) if rewrite else encoder
    _export(module, _image_config(encoder), "image", path, opset, {"batch_size": 2, "height": height, "width": width})


def export_text_onnx(tower: nn.Module, path: Path, *, context_length: int, opset: int = DEFAULT_OPSET) -> None:
    """The text tower: `input_ids`, `attention_mask` int64 [batch, context_length] -> `embedding`."""
    config = tower.model.config.text_config  # type: ignore[union-attr]
    _export(tower, config, "text", path, opset, {"batch_size": 2, "sequence_length": context_length})


def _image_config(encoder: nn.Module) -> Any:
    config = encoder.config if hasattr(encoder, "config") else encoder.model.config  # type: ignore[union-attr]
    return getattr(config, "vision_config", config)


def _export(module: nn.Module, config: Any, tower: str, path: Path, opset: int, shapes: dict[str, int]) -> None:
    """optimum's exporter: dummy inputs from the onnx config, names and dynamic batch axes from it, TorchScript
    tracing (`dynamo=False`, whose graph is the one onnxruntime's transformer optimizer has patterns for).

    optimum wants the module's transformers config on the module; the wrappers (`ClsOnlyEncoder`, the CLIP
    towers) carry the one their inputs come from. Its dynamic-axes fix-up is skipped: batch is the only
    dynamic axis, and the parity gates run every graph at several batch sizes.
    """
    from optimum.exporters.onnx import export

    onnx_config = _onnx_configs()[tower](config, task="feature-extraction")
    module.config = config
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(module, onnx_config, path, opset=opset, input_shapes=shapes, disable_dynamic_axes_fix=True)


def _onnx_configs() -> dict[str, type]:
    """The onnx config of each tower ("image", "text"), built on optimum's own classes (imported only when an
    export runs)."""
    from optimum.exporters.onnx.config import TextEncoderOnnxConfig, VisionOnnxConfig
    from optimum.utils import DummyTextInputGenerator, DummyVisionInputGenerator, NormalizedConfig
    from optimum.utils.normalized_config import NormalizedVisionConfig

    class BundleSizeImages(DummyVisionInputGenerator):
        """optimum's image generator takes the size from the config (DINOv2: 518); the bundle has its own."""

        def __init__(self, *args: Any, height: int, width: int, **kwargs: Any) -> None:
            super().__init__(*args, height=height, width=width, **kwargs)
            self.height, self.width = height, width

    class ImageEmbedding(VisionOnnxConfig):
        NORMALIZED_CONFIG_CLASS = NormalizedVisionConfig
        DUMMY_INPUT_GENERATOR_CLASSES = (BundleSizeImages,)

        @property
        def inputs(self) -> dict[str, dict[int, str]]:
            return {INPUT_NAME: {0: "batch"}}

        @property
        def outputs(self) -> dict[str, dict[int, str]]:
            return {OUTPUT_NAME: {0: "batch"}}

    class TextEmbedding(TextEncoderOnnxConfig):
        NORMALIZED_CONFIG_CLASS = NormalizedConfig.with_args(
            vocab_size="vocab_size", sequence_length="max_position_embeddings", allow_new=True
        )
        DUMMY_INPUT_GENERATOR_CLASSES = (DummyTextInputGenerator,)

        @property
        def inputs(self) -> dict[str, dict[int, str]]:
            return {"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}}

        @property
        def outputs(self) -> dict[str, dict[int, str]]:
            return {OUTPUT_NAME: {0: "batch"}}

    return {"image": ImageEmbedding, "text": TextEmbedding}
