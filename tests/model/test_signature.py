"""The pixel signature, `dupes`' second opinion: the copies people make are the same picture; different pictures,
and pictures with too little content to tell apart, are not, whatever a model says about them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import photo
from edge_search.runtime.model.signature import SIZE, Signature, compare, signature_of


def signature(image: Image.Image) -> Signature:
    """As the indexer makes it: from the picture resized for a 224-pixel model, with the full image's shape."""
    picture = image.convert("RGBA") if image.mode in ("RGBA", "LA", "P") else image.convert("RGB")
    scale = 224 / min(image.size)
    small = picture.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    parsed = Signature.parse(signature_of(small, image.width / image.height))
    assert parsed is not None
    return parsed


def reencoded(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.fixture(scope="module")
def original() -> Image.Image:
    return photo(11, 1200, 900)


@pytest.mark.parametrize(
    "copy",
    [
        lambda im: im.resize((600, 450), Image.Resampling.LANCZOS),
        lambda im: im.resize((300, 225), Image.Resampling.BILINEAR),
        lambda im: reencoded(im, 60),
        lambda im: reencoded(im.resize((800, 600)), 85),
    ],
    ids=["half", "quarter", "jpeg-60", "smaller-jpeg"],
)
def test_resized_and_reencoded_copies_are_the_same_picture(original, copy):
    verdict = compare(signature(original), signature(copy(original)))
    assert verdict.same and not verdict.mirrored and verdict.reason == ""


def test_a_mirrored_copy_is_the_same_picture_and_says_so(original):
    verdict = compare(signature(original), signature(reencoded(ImageOps.mirror(original), 92)))
    assert verdict.same and verdict.mirrored


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda im: im.crop((180, 135, 1020, 765)), "the pixels differ"),  # the centre 70%: same shape, less of it
        (lambda im: im.crop((0, 0, 1200, 700)), "different shape"),
        (lambda im: im.rotate(90, expand=True), "different shape"),
        (lambda im: photo(12, 1200, 900), "the pixels differ"),
    ],
    ids=["crop", "wider-crop", "rotated", "another-photo"],
)
def test_crops_rotations_and_other_photos_are_not(original, edit, reason):
    verdict = compare(signature(original), signature(edit(original)))
    assert not verdict.same and reason in verdict.reason


def test_flat_colours_are_the_same_only_when_pixel_identical():
    red = signature(Image.new("RGB", (800, 600), (250, 0, 0)))
    assert red.low_content
    assert compare(red, signature(Image.new("RGB", (400, 300), (250, 0, 0)))).same
    nearly = compare(red, signature(Image.new("RGB", (800, 600), (238, 12, 4))))
    assert not nearly.same and nearly.low_content and "pixel-identical" in nearly.reason


def test_transparent_patterns_blank_over_white_are_told_apart_by_their_alpha_and_texture():
    """Two white patterns on nothing, each covering a tenth of the picture: the same grey in every 16x16 cell,
    but lines are not dots; each resized is still itself."""
    yy, xx = np.mgrid[:600, :800]

    def overlay(mask: np.ndarray) -> Image.Image:
        rgba = np.zeros((600, 800, 4), dtype=np.uint8)
        rgba[..., :3], rgba[..., 3] = 255, np.where(mask, 230, 0)
        return Image.fromarray(rgba, "RGBA")

    lines, diagonal = overlay((yy % 40) < 4), overlay(((xx + yy) % 60) < 6)
    assert signature(lines).low_content  # blank over white
    assert not compare(signature(lines), signature(diagonal)).same
    for pattern in (lines, diagonal):
        assert compare(signature(pattern), signature(pattern.resize((400, 300), Image.Resampling.LANCZOS))).same


def test_gradients_in_other_directions_or_colours_are_not_the_same_picture():
    steps = np.linspace(0, 1, 800)[None, :, None]
    across = np.repeat(((1 - steps) * [255, 0, 0] + steps * [0, 0, 255]).astype(np.uint8), 600, axis=0)
    gradient = Image.fromarray(across, "RGB")
    assert signature(gradient).low_content
    downwards = gradient.transpose(Image.Transpose.TRANSPOSE).resize((800, 600))
    assert not compare(signature(gradient), signature(downwards)).same
    other_colours = np.repeat(((1 - steps) * [0, 160, 0] + steps * [255, 230, 0]).astype(np.uint8), 600, axis=0)
    assert not compare(signature(gradient), signature(Image.fromarray(other_colours, "RGB"))).same
    assert compare(signature(gradient), signature(gradient.resize((400, 300)))).same


def test_a_signature_is_a_fixed_size_record_and_anything_else_is_none(original):
    data = signature_of(original, original.width / original.height)
    assert len(data) == SIZE
    assert Signature.parse(data[:-1]) is None and Signature.parse(b"S9" + data[2:]) is None
    assert compare(Signature.parse(data), None).reason.startswith("no pixel signature")
