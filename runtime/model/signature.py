"""A picture's pixel signature: the model-independent second opinion `dupes` asks before it calls two files the
same picture.

An embedding alone cannot carry the claim "same picture": pictures with little content (flat colours, textures,
gradients, transparent images that are blank over white) crowd together in any model. The signature is the
picture itself, tiny: a 16x16 thumbnail with its alpha (straight colour, so transparency is kept, not flattened
away) and the aspect ratio of the upright image. It is made from the decoded image at index time (~1 KB a file,
stored in the catalog) so that `dupes` never decodes the library again.

`compare` is the rule (also in `dupes.RULE`): two signatures show the same picture when the aspect ratios agree
within 2% and the thumbnails differ by at most `TOLERANCE` (mean absolute difference over the cells, colour
weighted by how opaque the cell is, alpha always counted), as they are or one of them mirrored. A picture with
little structure (`low_content`: nearly one colour, or a smooth gradient, as seen over white) must match within
`LOW_CONTENT_TOLERANCE`: pixel-identical at this size. A crop or a rotation changes the thumbnail: not the same
picture (the original holds more than the crop; which of them a person wants is not for a tool to guess).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIDE = 16
VERSION = b"S1"
_HEADER = struct.Struct("<2sf")  # version, aspect ratio (width / height of the upright image)
FINE = 64  # the picture is first brought to FINE x FINE: the texture is measured there, the cells from it
TEXTURE = 8
TEXTURE_GAIN = 4.0  # texture values are mean steps (0-255) times this, to use the bytes' range
SIZE = _HEADER.size + SIDE * SIDE * 4 + TEXTURE * TEXTURE * 4

# Thresholds in 0-255 units, measured on the 153 photos and wallpapers of the dupes benchmark (Debian's and the
# trained fixture's): resized and re-encoded copies differ by 1.1 at the median and 3.4 at p95 (6.7 at most: a fine
# grey texture resized with Lanczos), mirrored ones (compared mirrored back) by 2.6 at most; the closest pair of
# different pictures (two colour variants of one wallpaper) by 10.2. Flat-colour and transparent copies differ by
# under 0.3 in the cells and 0.8 in the texture; lines against dots blank over white, by 1.2 and 12.
TOLERANCE = 7.0
LOW_CONTENT_TOLERANCE = 1.5
LOW_CONTENT_TEXTURE_TOLERANCE = 1.5
MAX_ASPECT_CHANGE = 0.02
# little structure: the over-white luma of the thumbnail departs from its own 4x4 blur by less than this (std,
# 0-255), or varies by less than LOW_CONTENT_SPREAD overall
LOW_CONTENT_DETAIL = 4.0
LOW_CONTENT_SPREAD = 6.0


def signature_of(picture: Image.Image, aspect: float) -> bytes:
    """The signature of a decoded, upright picture (RGB or RGBA after `preprocess.to_rgb`; usually already resized
    for the model, which costs nothing more) whose full image has this `aspect` (width / height)."""
    if picture.mode not in ("RGB", "RGBA"):
        picture = picture.convert("RGBA")
    # BOX is the mean of each cell; Pillow resizes images with alpha premultiplied, so colour under transparent
    # pixels does not bleed in
    fine = picture.resize((FINE, FINE), Image.Resampling.BOX, reducing_gap=2.0).convert("RGBA")
    small = fine.resize((SIDE, SIDE), Image.Resampling.BOX)
    return pack(np.asarray(small, dtype=np.uint8), aspect, texture_of(np.asarray(fine, dtype=np.float32)))


def texture_of(rgba: np.ndarray) -> np.ndarray:
    """(TEXTURE, TEXTURE, 4) uint8: per region of the FINE x FINE picture, the mean absolute step across and down
    of its luma over white and of its alpha. Two pictures with the same average colour in every cell (a pattern
    of lines and one of dots, both white on nothing) differ here."""
    alpha = rgba[..., 3] / 255.0
    luma = (rgba[..., :3] * alpha[..., None] + 255.0 * (1 - alpha[..., None])) @ np.array([0.299, 0.587, 0.114])
    channels = []
    for plane in (luma, rgba[..., 3]):
        across = np.abs(np.diff(plane, axis=1, append=plane[:, -1:]))
        down = np.abs(np.diff(plane, axis=0, append=plane[-1:, :]))
        channels += [across, down]
    steps = np.stack(channels, axis=-1)  # (FINE, FINE, 4)
    region = FINE // TEXTURE
    pooled = steps.reshape(TEXTURE, region, TEXTURE, region, 4).mean(axis=(1, 3))
    return np.clip(np.round(pooled * TEXTURE_GAIN), 0, 255).astype(np.uint8)


def pack(cells: np.ndarray, aspect: float, texture: np.ndarray | None = None) -> bytes:
    """The stored form: version, aspect ratio, (SIDE, SIDE, 4) uint8 cells of straight colour and alpha, and the
    (TEXTURE, TEXTURE, 4) texture (`texture_of`; zeros when not given)."""
    texture = np.zeros((TEXTURE, TEXTURE, 4), dtype=np.uint8) if texture is None else texture
    return (
        _HEADER.pack(VERSION, aspect)
        + np.ascontiguousarray(cells, dtype=np.uint8).tobytes()
        + np.ascontiguousarray(texture, dtype=np.uint8).tobytes()
    )


@dataclass(frozen=True)
class Signature:
    aspect: float
    cells: np.ndarray  # (SIDE, SIDE, 4) float32, 0-255, straight colour and alpha
    texture: np.ndarray  # (TEXTURE, TEXTURE, 4) float32: `texture_of`

    @classmethod
    def parse(cls, data: bytes) -> Signature | None:
        """None for anything that is not a signature of this version (such a file is compared by nothing)."""
        if len(data) != SIZE or data[:2] != VERSION:
            return None
        _, aspect = _HEADER.unpack_from(data)
        cells = np.frombuffer(data, dtype=np.uint8, count=SIDE * SIDE * 4, offset=_HEADER.size)
        texture = np.frombuffer(data, dtype=np.uint8, offset=_HEADER.size + cells.size)
        return cls(
            float(aspect),
            cells.reshape(SIDE, SIDE, 4).astype(np.float32),
            texture.reshape(TEXTURE, TEXTURE, 4).astype(np.float32),
        )

    def over_white_luma(self) -> np.ndarray:
        alpha = self.cells[..., 3:] / 255.0
        rgb = self.cells[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)

    @functools.cached_property
    def low_content(self) -> bool:
        """Nearly one colour, or a smooth gradient, as a viewer shows it on white: nothing a model can tell apart."""
        luma = self.over_white_luma()
        if float(luma.std()) < LOW_CONTENT_SPREAD:
            return True
        blurred = np.asarray(
            Image.fromarray(luma.astype(np.float32), "F")
            .resize((4, 4), Image.Resampling.BOX)
            .resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        )
        return float((luma - blurred).std()) < LOW_CONTENT_DETAIL


def distance(a: Signature, b: Signature, *, mirrored: bool = False) -> float:
    """Mean absolute difference of the two thumbnails (0-255): colour weighted by the more opaque of the two
    cells (colour under transparent pixels means nothing), alpha counted everywhere."""
    other = b.cells[:, ::-1] if mirrored else b.cells
    opacity = np.maximum(a.cells[..., 3:], other[..., 3:]) / 255.0
    colour = (np.abs(a.cells[..., :3] - other[..., :3]) * opacity).mean()
    alpha = np.abs(a.cells[..., 3] - other[..., 3]).mean()
    return float((3 * colour + alpha) / 4)


@dataclass(frozen=True)
class PixelVerdict:
    same: bool
    distance: float  # of the closer orientation
    mirrored: bool  # the match is with one of them mirrored
    low_content: bool
    reason: str  # why not the same picture ("" when it is)

    def as_dict(self) -> dict:
        return {
            "same": self.same,
            "distance": round(self.distance, 2),
            "mirrored": self.mirrored,
            "low_content": self.low_content,
            "reason": self.reason,
        }


def compare(a: Signature | None, b: Signature | None) -> PixelVerdict:
    """Whether two signatures show the same picture, by the rule in this module's docstring."""
    if a is None or b is None:
        return PixelVerdict(False, float("inf"), False, False, "no pixel signature (the file could not be read)")
    low = a.low_content or b.low_content
    if abs(np.log(a.aspect / b.aspect)) > MAX_ASPECT_CHANGE:
        return PixelVerdict(False, float("inf"), False, low, "different shape (cropped or rotated?)")
    straight, flipped = distance(a, b), distance(a, b, mirrored=True)
    mirrored = flipped < straight
    nearest = min(straight, flipped)
    tolerance = LOW_CONTENT_TOLERANCE if low else TOLERANCE
    fine_ok = not low or texture_distance(a, b, mirrored=mirrored) <= LOW_CONTENT_TEXTURE_TOLERANCE
    if nearest <= tolerance and fine_ok:
        return PixelVerdict(True, nearest, mirrored, low, "")
    why = "little content: only a pixel-identical copy counts" if low else "the pixels differ"
    return PixelVerdict(False, nearest, mirrored, low, why)


def texture_distance(a: Signature, b: Signature, *, mirrored: bool = False) -> float:
    """Mean absolute difference of the two textures, in steps of 0-255."""
    other = b.texture[:, ::-1] if mirrored else b.texture
    return float(np.abs(a.texture - other).mean() / TEXTURE_GAIN)
