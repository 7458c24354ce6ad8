"""Compute only what the CLS embedding needs: the last layer runs for the CLS token alone.

The embedding is last_hidden_state[:, 0]. In the final layer, keys and values still need every token,
but the query, the attention output projection, both residuals, the MLP and the final LayerNorm are
needed for one token instead of 197: about 10/12 of the last layer's work (~7% of ViT-B/16) is skipped.
The result is the same function; parity against the stock PyTorch model checks it on every export.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def heads_of(self_attention: Any) -> tuple[int, int]:
    """(heads, head size) of a fusable (`attention.py`) or a stock transformers self-attention."""
    heads = getattr(self_attention, "num_heads", getattr(self_attention, "num_attention_heads", 0))
    return int(heads), int(getattr(self_attention, "head_size", getattr(self_attention, "attention_head_size", 0)))


def _cls_attention(self_attention: Any, normed: torch.Tensor, log_size: torch.Tensor | None) -> torch.Tensor:
    """Self-attention with the CLS token as the only query: [B, N, D] -> [B, 1, D]; `log_size` [B, 1, 1, N]:
    token merging's proportional bias."""
    heads, size = heads_of(self_attention)
    batch = normed.shape[0]
    query = self_attention.query(normed[:, :1]).view(batch, 1, heads, size).permute(0, 2, 1, 3)
    key_t = self_attention.key(normed).view(batch, -1, heads, size).permute(0, 2, 3, 1)
    value = self_attention.value(normed).view(batch, -1, heads, size).permute(0, 2, 1, 3)
    scores = torch.matmul(query, key_t) / math.sqrt(size)
    if log_size is not None:
        scores = scores + log_size
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, value).permute(0, 2, 1, 3).reshape(batch, 1, heads * size)


def cls_last_layer(layer: Any, hidden: torch.Tensor, log_size: torch.Tensor | None = None) -> torch.Tensor:
    """The last encoder layer for the CLS token only ([B, N, D] -> [B, 1, D])."""
    if hasattr(layer, "layernorm_before"):  # ViT, DeiT
        context = _cls_attention(layer.attention.attention, layer.layernorm_before(hidden), log_size)
        hidden = layer.attention.output(context, None) + hidden[:, :1]
        return layer.output(layer.intermediate(layer.layernorm_after(hidden)), hidden)
    # DINOv2 (LayerScale folded into the projections when exported, so layer_scale* are identities there)
    context = _cls_attention(layer.attention.attention, layer.norm1(hidden), log_size)
    hidden = layer.layer_scale1(layer.attention.output(context, None)) + hidden[:, :1]
    return layer.layer_scale2(layer.mlp(layer.norm2(hidden))) + hidden


class ClsOnlyEncoder(nn.Module):
    """pixel_values -> CLS embedding, for a ViT-style encoder whose attention was made fusable."""

    def __init__(self, encoder: Any):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        model = self.encoder
        hidden = model.embeddings(pixel_values)
        layers = model.encoder.layer
        for layer in layers[:-1]:
            out = layer(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
        hidden = cls_last_layer(layers[-1], hidden)
        return model.layernorm(hidden)[:, 0]
