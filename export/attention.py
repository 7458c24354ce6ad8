"""An export-time self-attention in the exact op order onnxruntime's Attention fusion recognises.

Why: transformers' eager attention scales with `Mul` (QK^T * scale) and its SDPA path exports
`Mul(Sqrt)` on both Q and K without a mask `Add`; neither matches any pattern of
`onnxruntime.transformers.fusion_attention.FusionAttention` (it wants Softmax <- Div <- MatMul for an
unmasked attention, with K transposed to [B, H, d, S] by a single Transpose). The result was 0 fused
Attention nodes. This module computes the same maths as ViT/DeiT/DINOv2 self-attention, written as

    q, k, v = Linear(x)                      MatMul + Add each
    q -> Reshape -> Transpose(0,2,1,3)
    k -> Reshape -> Transpose(0,2,3,1)       (one Transpose, already K^T)
    v -> Reshape -> Transpose(0,2,1,3)
    probs = Softmax(MatMul(q, k) / sqrt(d))
    ctx = MatMul(probs, v) -> Transpose -> Reshape

so each layer fuses into one `com.microsoft.Attention` node.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class FusableSelfAttention(nn.Module):
    """Drop-in for `ViTSelfAttention` (and its DeiT / DINOv2 copies), sharing the original's weights."""

    def __init__(self, original: Any):
        super().__init__()
        self.query = original.query
        self.key = original.key
        self.value = original.value
        self.num_heads = int(original.num_attention_heads)
        self.head_size = int(original.attention_head_size)
        self.all_head_size = self.num_heads * self.head_size
        self.divisor = math.sqrt(self.head_size)

    def forward(self, hidden_states: torch.Tensor, head_mask: torch.Tensor | None = None, *args, **kwargs):
        batch = hidden_states.shape[0]
        shape = (batch, -1, self.num_heads, self.head_size)
        query = self.query(hidden_states).view(shape).permute(0, 2, 1, 3)
        key_t = self.key(hidden_states).view(shape).permute(0, 2, 3, 1)
        value = self.value(hidden_states).view(shape).permute(0, 2, 1, 3)
        scores = torch.matmul(query, key_t) / self.divisor
        probs = torch.softmax(scores, dim=-1)
        if head_mask is not None:
            probs = probs * head_mask
        context = torch.matmul(probs, value).permute(0, 2, 1, 3)
        context = context.reshape(batch, -1, self.all_head_size)
        return context, None


def is_replaceable(module: Any) -> bool:
    return all(
        hasattr(module, name) for name in ("query", "key", "value", "num_attention_heads", "attention_head_size")
    )


def make_fusable(model: Any) -> int:
    """Swap every ViT-style self-attention in `model` for `FusableSelfAttention`; returns how many."""
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if is_replaceable(child)
    ]
    for parent, name, child in swaps:
        setattr(parent, name, FusableSelfAttention(child))
    return len(swaps)


def _scale_linear(linear: Any, scale: torch.Tensor) -> None:
    with torch.no_grad():
        linear.weight.mul_(scale[:, None])
        if linear.bias is not None:
            linear.bias.mul_(scale)


def fold_layer_scale(model: Any) -> int:
    """Fold DINOv2's LayerScale (a per-channel Mul after attention and MLP) into the preceding Linear.

    The Mul sits between the attention's output projection and the residual Add, where the fusion
    expects nothing; folding it into the projection's weights gives the same function without it.
    """
    folded = 0
    for layer in model.modules():
        if not all(hasattr(layer, name) for name in ("layer_scale1", "layer_scale2", "attention", "mlp")):
            continue
        mlp_out = getattr(layer.mlp, "fc2", None) or getattr(layer.mlp, "weights_out", None)
        _scale_linear(layer.attention.output.dense, layer.layer_scale1.lambda1)
        _scale_linear(mlp_out, layer.layer_scale2.lambda1)
        layer.layer_scale1 = nn.Identity()
        layer.layer_scale2 = nn.Identity()
        folded += 1
    return folded
