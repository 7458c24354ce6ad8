"""CLIP checkpoints: the two towers as separate graphs, and what the text tower's parity check reads.

The image tower is `get_image_features` (vision encoder, post-layernorm of the class token, visual
projection) and the text tower `get_text_features` (text encoder pooled at the end-of-text token,
text projection): the embeddings transformers itself compares, in one space.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

# Tricky text the parity check (and the tests) tokenise: punctuation, unicode, spacing, long input.
PARITY_TEXTS = (
    "a photo of a dog on the beach",
    "Two cats, sleeping! On a red sofa?",
    "Ünïcödé café — 東京の夜景 🌃",
    "  lots   of\twhite\nspace  ",
    "don't, won't & can't: 3.14 @home #tags",
    "a very long description " * 40,
    "x",
    "THE SAME IN CAPITALS",
)


class ClipImageTower(nn.Module):
    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values)


class ClipTextTower(nn.Module):
    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)


def context_length(model: Any) -> int:
    return int(model.config.text_config.max_position_embeddings)


def tokenize(tokenizer: Any, texts: tuple[str, ...] | list[str], length: int) -> dict[str, np.ndarray]:
    """What the runtime feeds the text graph, made by transformers' own tokenizer."""
    encoded = tokenizer(list(texts), padding="max_length", truncation=True, max_length=length, return_tensors="np")
    return {
        "input_ids": encoded["input_ids"].astype(np.int64),
        "attention_mask": encoded["attention_mask"].astype(np.int64),
    }


def text_reference(tower: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return tower(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])).float().numpy()
