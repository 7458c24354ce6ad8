"""Token merging (ToMe, Bolya et al., ICLR 2023), training-free, applied at export: fewer tokens, same weights.

After its attention, every block but the last merges the `r` patch tokens most similar to a partner into that
partner (bipartite soft matching on the attention keys averaged over heads; size-weighted averages), and
later attention is biased by log(size) so a merged token weighs as the patches it stands for (proportional
attention). The class token is never merged. A 224 px ViT-B/16 goes from 197 tokens to 197 - 11 r in its last
block, which runs for the class token alone (`cls_only.py`).

Why here and not in transformers: the merge must be inside the exported graph, its attention in the op order
`merged_attention.py` fuses; the same code run on the unpatched encoder is the PyTorch reference the parity
gates measure every graph against (with r = 0 it reproduces transformers). The merge is written with ops every
engine runs (TopK, GatherElements, MatMul with a one-hot matrix; no ScatterElements reduction).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .cls_only import cls_last_layer, heads_of
from .errors import ExportUsageError


def _attention(self_attention: Any, normed: torch.Tensor, log_size: torch.Tensor | None):
    """Self-attention in `FusableSelfAttention`'s op order, plus the proportional bias expanded to [B, 1, S, T]
    (the shape onnxruntime's Attention takes it in)."""
    heads, size = heads_of(self_attention)
    batch = normed.shape[0]
    query = self_attention.query(normed).view(batch, -1, heads, size).permute(0, 2, 1, 3)
    key_t = self_attention.key(normed).view(batch, -1, heads, size).permute(0, 2, 3, 1)
    value = self_attention.value(normed).view(batch, -1, heads, size).permute(0, 2, 1, 3)
    scores = torch.matmul(query, key_t) / math.sqrt(size)
    if log_size is not None:
        scores = scores + log_size.expand(-1, -1, normed.shape[1], -1)
    return torch.matmul(torch.softmax(scores, dim=-1), value).permute(0, 2, 1, 3).reshape(batch, -1, heads * size)


def key_metric(self_attention: Any) -> nn.Linear:
    """The merge's similarity, the keys averaged over heads, as one small projection whose weights are the key
    weights averaged over heads: the same numbers, the attention's own key projection keeps a single consumer,
    and the graph holds [head size, hidden] weights instead of a second copy of the keys'."""
    heads, size = heads_of(self_attention)
    key = self_attention.key
    projection = nn.Linear(key.in_features, size, bias=key.bias is not None)
    with torch.no_grad():
        projection.weight.copy_(key.weight.view(heads, size, -1).mean(dim=0))
        if key.bias is not None:
            projection.bias.copy_(key.bias.view(heads, size).mean(dim=0))
    return projection


def merge(
    hidden: torch.Tensor, metric: torch.Tensor, size: torch.Tensor, r: int, special: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge `r` tokens of `hidden` [B, N, C] into their most similar partner by `metric` [B, N, K]; `size`
    [B, N, 1] counts the patches each token stands for. Tokens alternate between the two sides (even: may be
    merged away, odd: may receive); the `special` leading tokens (class; DeiT's distillation token) are never
    merged; order is kept otherwise."""
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = torch.matmul(metric[:, ::2], metric[:, 1::2].transpose(-1, -2))
    evens = torch.arange(scores.shape[1], device=scores.device)[:, None]
    odds = torch.arange(scores.shape[2], device=scores.device)[None, :]
    # the class token (first even) leaves for nowhere; DeiT's distillation token (first odd) takes in no patch
    blocked = (evens == 0) | (odds == 0) if special > 1 else (evens == 0) & (odds >= 0)
    best, partner = scores.masked_fill(blocked, -math.inf).max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    moved, kept = order[:, :r], order[:, r:].sort(dim=-1)[0]
    into = partner.gather(1, moved)  # [B, r]: the odd token each moved one joins
    receivers = hidden.shape[1] // 2
    joins = (into[..., None] == torch.arange(receivers, device=into.device)).to(hidden.dtype)  # [B, r, N/2]

    def combine(t: torch.Tensor) -> torch.Tensor:
        even, odd = t[:, ::2], t[:, 1::2]
        channels = t.shape[-1]
        staying = even.gather(1, kept[..., None].expand(-1, -1, channels))
        leaving = even.gather(1, moved[..., None].expand(-1, -1, channels))
        return torch.cat([staying, odd + torch.matmul(joins.transpose(1, 2), leaving)], dim=1)

    total = combine(hidden * size)
    size = combine(size)
    return total / size, size


def _log(size: torch.Tensor) -> torch.Tensor:
    """Proportional attention's bias from the tokens' sizes [B, N, 1]: [B, 1, 1, N]."""
    return size.log()[:, None, None, :, 0]


def _is_dinov2(layer: Any) -> bool:
    return hasattr(layer, "norm1")


def _merging_block(
    layer: Any, metric_of: nn.Module, hidden: torch.Tensor, size: torch.Tensor | None, r: int, special: int
):
    """One ViT/DeiT/DINOv2 block (LayerScale folded or not) that merges `r` tokens after its attention, by the
    similarity `metric_of` gives."""
    dinov2 = _is_dinov2(layer)
    normed = (layer.norm1 if dinov2 else layer.layernorm_before)(hidden)
    log_size = None if size is None else _log(size)
    context = _attention(layer.attention.attention, normed, log_size)
    metric = metric_of(normed)
    out = layer.attention.output(context, None)
    hidden = hidden + (layer.layer_scale1(out) if dinov2 else out)
    if size is None:  # every token stands for one patch until the first merge
        size = torch.ones_like(hidden[..., :1])
    hidden, size = merge(hidden, metric, size, r, special)
    if dinov2:
        return hidden + layer.layer_scale2(layer.mlp(layer.norm2(hidden))), size
    return layer.output(layer.intermediate(layer.layernorm_after(hidden)), hidden), size


def special_tokens(encoder: Any) -> int:
    """Leading tokens that are not patches: the class token, and DeiT's distillation token."""
    return 2 if getattr(encoder.embeddings, "distillation_token", None) is not None else 1


def tokens_after(tokens: int, layers: int, r: int) -> int:
    """Tokens left in the last block: each block before it merges min(r, half the patch tokens)."""
    for _ in range(layers - 1):
        tokens -= min(r, (tokens - 1) // 2)
    return tokens


def plan(source: Any, r: int, height: int, width: int) -> dict[str, Any] | None:
    """What merging `r` tokens per block does to this encoder (the manifest's record), None for r = 0; an
    ExportUsageError where it cannot apply."""
    if not r:
        return None
    if source.is_clip:
        raise ExportUsageError("--merge-tokens applies to ViT, DeiT and DINOv2 encoders; CLIP's is exported as it is.")
    encoder = source.encoder
    with torch.no_grad():
        tokens = int(encoder.embeddings(torch.zeros(1, 3, height, width)).shape[1])
    layers = len(encoder.encoder.layer)
    patches = tokens - special_tokens(encoder)
    most = min((patches - 1) // (layers - 1), patches // 2)
    if r > most:
        raise ExportUsageError(
            f"--merge-tokens {r} is more than this model can merge: its {layers - 1} blocks before the last see "
            f"{patches} patches, so at most {most} per block."
        )
    return {"r": r, "tokens": tokens, "tokens_last_block": tokens_after(tokens, layers, r)}


def reference(encoder: Any, r: int, pixels: np.ndarray) -> np.ndarray:
    """The merged embedding computed by PyTorch on transformers' own modules (what every graph is gated on)."""
    with torch.no_grad():
        return TokenMergingEncoder(encoder, r).eval()(torch.from_numpy(pixels)).float().numpy()


class TokenMergingEncoder(nn.Module):
    """pixel_values -> CLS embedding of a ViT-style encoder, merging `r` tokens per block. On the patched
    encoder (fusable attention, LayerScale folded) it is the exported graph; on the original, the reference."""

    def __init__(self, encoder: Any, r: int):
        super().__init__()
        self.encoder = encoder
        self.r = r
        self.metrics = nn.ModuleList(key_metric(layer.attention.attention) for layer in encoder.encoder.layer[:-1])
        self.special = special_tokens(encoder)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        model = self.encoder
        hidden = model.embeddings(pixel_values)
        size = None
        for layer, metric_of in zip(model.encoder.layer[:-1], self.metrics):
            r = min(self.r, (hidden.shape[1] - 1) // 2)
            hidden, size = _merging_block(layer, metric_of, hidden, size, r, self.special)
        hidden = cls_last_layer(model.encoder.layer[-1], hidden, None if size is None else _log(size))
        return model.layernorm(hidden)[:, 0]
