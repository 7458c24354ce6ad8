"""Photo-like synthetic images: smooth gradients, shapes, texture and noise, from a fixed seed.

Used where no real photos may be fetched: the export's parity batch, tests and benchmarks. Uniform
noise alone is a poor proxy for photos (every patch looks alike to the model), hence the structure.
Also clustered embedding-like vectors, for the vector-index tests and benchmarks.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo_like(seed: int, width: int = 320, height: int = 240) -> Image.Image:
    """An RGB image with a sky-like gradient, a few filled shapes, blur and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * x / width + np.sin(angle) * y / height + 1) / 2
    base = top[None, None, :] * (1 - ramp[..., None]) + bottom[None, None, :] * ramp[..., None]
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        w, h = rng.uniform(0.05, 0.6) * width, rng.uniform(0.05, 0.6) * height
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = [x0, y0, x0 + w, y0 + h]
        if rng.random() < 0.5:
            draw.ellipse(box, fill=color)
        else:
            draw.rectangle(box, fill=color)
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 2.0))))
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0, rng.uniform(2, 12), pixels.shape).astype(np.float32)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def parity_batch(count: int = 8, seed: int = 1234) -> list[Image.Image]:
    """Images of varied sizes and aspect ratios, plus one of pure noise and one flat colour."""
    rng = np.random.default_rng(seed)
    images = [
        photo_like(seed + i, int(rng.integers(96, 640)), int(rng.integers(96, 640))) for i in range(max(count - 2, 1))
    ]
    images.append(Image.fromarray(rng.integers(0, 256, (200, 260, 3), dtype=np.uint8), "RGB"))
    images.append(Image.new("RGB", (150, 150), (200, 120, 40)))
    return images


def clustered_embeddings(n: int, dim: int, clusters: int, seed: int, rank: int = 24) -> np.ndarray:
    """Unit vectors shaped like real embeddings: cluster centres plus variation along a few shared
    directions (low intrinsic dimension) and a little isotropic noise. Pure isotropic noise has no
    neighbours worth finding and HNSW scores ~0.4-0.6 on it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    basis = rng.normal(size=(rank, dim)).astype(np.float32) / np.sqrt(rank)
    vectors = (
        0.6 * centres[rng.integers(0, clusters, n)]
        + rng.normal(size=(n, rank)).astype(np.float32) @ basis
        + rng.normal(scale=0.02, size=(n, dim)).astype(np.float32)
    )
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
