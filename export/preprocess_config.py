"""Read the model's own image-processor settings into the manifest's `PreprocessConfig`."""

from __future__ import annotations

from typing import Any

from edge_search.runtime.model.bundle import PreprocessConfig

from .errors import SourceError


def _plain_size(size: Any) -> dict[str, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return {"height": size, "width": size}
    return {key: int(value) for key, value in dict(size).items() if value is not None}


def preprocess_config(processor: Any) -> PreprocessConfig:
    """Everything the runtime needs to reproduce `processor` with numpy + Pillow."""
    size = _plain_size(getattr(processor, "size", None)) or {}
    if not ({"height", "width"} <= size.keys() or "shortest_edge" in size):
        raise SourceError(f"Unsupported image-processor size {size!r} ({type(processor).__name__}).")
    do_center_crop = bool(getattr(processor, "do_center_crop", False))
    mean = getattr(processor, "image_mean", None) or [0.0, 0.0, 0.0]
    std = getattr(processor, "image_std", None) or [1.0, 1.0, 1.0]
    return PreprocessConfig(
        processor_class=type(processor).__name__,
        do_convert_rgb=True,
        do_resize=bool(getattr(processor, "do_resize", True)),
        size=size,
        resample=int(getattr(processor, "resample", 2)),
        do_center_crop=do_center_crop,
        crop_size=_plain_size(getattr(processor, "crop_size", None)) if do_center_crop else None,
        do_rescale=bool(getattr(processor, "do_rescale", True)),
        rescale_factor=float(getattr(processor, "rescale_factor", 1 / 255)),
        do_normalize=bool(getattr(processor, "do_normalize", True)),
        image_mean=[float(v) for v in (mean if isinstance(mean, (list, tuple)) else [mean] * 3)],
        image_std=[float(v) for v in (std if isinstance(std, (list, tuple)) else [std] * 3)],
    )
