"""Load the model to export: a hub id or a local checkpoint, or its architecture with random weights.

Supported: encoders whose CLS token is the image embedding and whose self-attention is ViT-shaped
(ViT, DeiT, DINOv2: the export swaps in an attention module that onnxruntime fuses), and CLIP
(`CLIPModel`: an image tower and a text tower with their projections, plus the fast tokenizer).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .defaults import DEFAULT_MODEL
from .errors import ExportError, ExportUsageError, SourceError

SUPPORTED_MODEL_TYPES = ("vit", "deit", "dinov2", "clip")
RANDOM_WEIGHTS_SEED = 0


@dataclass
class Source:
    """A loaded encoder (eval mode, float32) and what the manifest must say about it."""

    encoder: nn.Module
    config: Any
    processor: Any
    model_id: str
    revision: str | None
    commit: str | None
    random_weights: bool
    text_encoder: nn.Module | None = None  # CLIP: the text tower
    tokenizer: Any = None  # CLIP: transformers' fast tokenizer (its tokenizer.json goes into the bundle)

    @property
    def architecture(self) -> str:
        return "CLIPModel" if self.model_type == "clip" else type(self.encoder).__name__

    @property
    def model_type(self) -> str:
        return str(self.config.model_type)

    @property
    def is_clip(self) -> bool:
        return self.model_type == "clip"

    @property
    def embedding_dim(self) -> int:
        return int(self.config.projection_dim if self.is_clip else self.config.hidden_size)

    def attention_shape(self, tower: str = "image") -> tuple[int, int]:
        """(heads, hidden size) of a tower's self-attention, for the fusion optimizer."""
        config = self.config
        if self.is_clip:
            config = config.text_config if tower == "text" else config.vision_config
        return int(config.num_attention_heads), int(config.hidden_size)

    def image_reference(self, pixel_values: np.ndarray) -> np.ndarray:
        """The embedding transformers computes: the CLS token (ViT family) or `get_image_features` (CLIP)."""
        with torch.no_grad():
            out = self.encoder(pixel_values=torch.from_numpy(pixel_values))
        return (out if self.is_clip else out.last_hidden_state[:, 0]).float().numpy()


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def _builtin_default() -> tuple[Any, Any]:
    """ViT-B/16 at 224 px exactly as `google/vit-base-patch16-224` configures it, with no network."""
    from transformers import ViTConfig, ViTImageProcessor
    from transformers.image_utils import PILImageResampling

    config = ViTConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=224,
        patch_size=16,
        num_channels=3,
        qkv_bias=True,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
    )
    processor = ViTImageProcessor(
        do_resize=True,
        size={"height": 224, "width": 224},
        resample=PILImageResampling.BILINEAR,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return config, processor


def _hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the hub cannot be reached from here (one quick connection), or None."""
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{host} cannot be reached: {exc.strerror or exc}"


def _hub_failure(model_id: str, exc: Exception) -> ExportError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SourceError(
        f"Could not fetch {model_id!r} from the Hugging Face hub ({reason}). This machine may be offline. "
        f"Ways out: pass a local checkpoint directory to --model (one made by `save_pretrained`, with "
        f"config.json and preprocessor_config.json); or set HF_HUB_OFFLINE=1 if the model is already in the "
        f"local Hugging Face cache; or use --random-weights to build the architecture with random weights "
        f"(for speed benchmarks and smoke runs only)."
    )


def _check_supported(config: Any, model_id: str) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise SourceError(
            f"{model_id!r} is a {model_type!r} model, which export-model does not support. Supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (ViT, DeiT, DINOv2 checkpoints, with or without a "
            "classification head; the encoder's CLS token is the embedding)."
        )


def _encoder_class(model_type: str):
    from transformers import CLIPModel, DeiTModel, Dinov2Model, ViTModel

    return {"vit": ViTModel, "deit": DeiTModel, "dinov2": Dinov2Model, "clip": CLIPModel}[model_type]


def _encoder_kwargs(model_type: str) -> dict[str, Any]:
    return {"add_pooling_layer": False} if model_type in ("vit", "deit") else {}


def load_source(model: str = DEFAULT_MODEL, *, revision: str | None = None, random_weights: bool = False) -> Source:
    """Resolve `model` (hub id or directory) into an encoder plus its image processor."""
    _quiet_transformers()
    from transformers import AutoConfig, AutoImageProcessor

    local = Path(model).expanduser()
    is_local = local.exists()
    if is_local and not (local / "config.json").is_file():
        raise ExportUsageError(f"{local} is not a checkpoint directory (it has no config.json).")
    if not is_local and (model.startswith((".", "/", "~")) or os.sep + os.sep in model):
        raise ExportUsageError(f"No checkpoint directory at {model}.")
    ref = str(local) if is_local else model
    # an unreachable hub: only the local cache (huggingface_hub would spend ~20 s of retries on each file)
    unreachable = None if is_local or os.environ.get("HF_HUB_OFFLINE") else _hub_unreachable()

    def fetch(loader):
        try:
            return loader.from_pretrained(
                ref,
                revision=revision,
                **({"local_files_only": True} if unreachable else {}),
                **({"use_fast": False} if loader is AutoImageProcessor else {}),
            )
        except Exception as exc:  # hub / network / cache errors come in many types
            if is_local:
                raise ExportUsageError(f"Cannot read the checkpoint at {local}: {str(exc).strip()}") from exc
            raise _hub_failure(model, RuntimeError(unreachable) if unreachable else exc) from exc

    try:
        config = fetch(AutoConfig)
        _check_supported(config, model)
        processor = fetch(AutoImageProcessor)
    except ExportError:
        if not (random_weights and model == DEFAULT_MODEL):
            raise
        config, processor = _builtin_default()
    config._attn_implementation = "sdpa"
    model_type = config.model_type
    encoder_class = _encoder_class(model_type)

    if random_weights:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        encoder = encoder_class(config, **_encoder_kwargs(model_type))
    else:
        try:
            encoder = encoder_class.from_pretrained(ref, revision=revision, **_encoder_kwargs(model_type))
        except Exception as exc:
            if is_local:
                raise ExportUsageError(f"Cannot load the weights at {local}: {exc}") from exc
            raise _hub_failure(model, exc) from exc
    encoder = encoder.float().eval()
    commit = getattr(config, "_commit_hash", None)
    text_encoder = tokenizer = None
    if model_type == "clip":
        from transformers import AutoTokenizer

        from .clip import ClipImageTower, ClipTextTower

        tokenizer = fetch(AutoTokenizer)
        if not getattr(tokenizer, "is_fast", False):
            raise SourceError(f"{model!r} has no fast tokenizer (tokenizer.json), which the runtime's tokenizer reads.")
        encoder, text_encoder = ClipImageTower(encoder).eval(), ClipTextTower(encoder).eval()
    return Source(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        encoder=encoder,
        config=config,
        processor=processor,
        model_id=str(local.resolve()) if is_local else model,
        revision=revision,
        commit=commit,
        random_weights=random_weights,
    )
