"""PNG and WebP decoded by libvips: the pixels Pillow gives, or declined so Pillow decodes them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import photo
from edge_search.runtime.errors import ImageDecodeError
from edge_search.runtime.model import vips_decode
from edge_search.runtime.model.preprocess import Preprocessor, open_image

pytest.importorskip("pyvips")


def _bytes(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _pillow(data: bytes, monkeypatch, **kw) -> Image.Image:
    with monkeypatch.context() as patch:
        patch.setattr(vips_decode, "_vips", False)
        return open_image(io.BytesIO(data), **kw)


def _palette_with_transparency() -> Image.Image:
    image = photo(5, 90, 70).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 3
    return image


PNG_KINDS = {
    "RGB": lambda: photo(1, 123, 77),
    "RGBA": lambda: photo(2, 64, 99).convert("RGBA"),
    "L": lambda: photo(3, 50, 50).convert("L"),
    "LA": lambda: photo(4, 41, 33).convert("LA"),
    "P+transparency": _palette_with_transparency,
}


@pytest.mark.parametrize("kind", sorted(PNG_KINDS))
@pytest.mark.parametrize("interlaced", [False, True])
def test_pngs_of_every_common_kind_decode_to_the_same_pixels_as_pillow(kind, interlaced, monkeypatch):
    image = PNG_KINDS[kind]()
    if kind == "RGBA" or kind == "LA":  # varied alpha, including fully transparent pixels
        alpha = np.linspace(0, 255, image.width * image.height).reshape(image.height, image.width).astype(np.uint8)
        image.putalpha(Image.fromarray(alpha))
    extra = {"transparency": 3} if kind == "P+transparency" else {}
    data = _bytes(image, "PNG", optimize=False, interlace=interlaced, **extra)
    through_vips = vips_decode.decode(data, max_pixels=10**8)
    assert through_vips is not None, "libvips should have decoded it"
    preprocess = Preprocessor(config=_vit_config())
    by_pillow = _pillow(data, monkeypatch)
    assert np.array_equal(preprocess.from_image(through_vips), preprocess.from_image(by_pillow))


def _vit_config():
    from transformers import ViTImageProcessor

    from edge_search.export.preprocess_config import preprocess_config

    return preprocess_config(ViTImageProcessor())


def test_a_large_webp_is_decoded_reduced_but_no_smaller_than_three_times_the_model_input(monkeypatch):
    data = _bytes(photo(6, 2400, 1600), "WEBP", quality=90)
    reduced = vips_decode.decode(data, max_pixels=10**8, draft_hw=(448, 448))
    assert reduced is not None and min(reduced.size) >= 3 * 224 - 1 and reduced.size[0] < 2400
    preprocess = Preprocessor(config=_vit_config())
    full = preprocess.from_image(_pillow(data, monkeypatch).convert("RGB"))
    close = preprocess.from_image(reduced)
    assert np.abs(close - full).mean() < 0.02  # a few 8-bit levels at most, on a [-1, 1] scale
    # Without a draft size (thumbnails of originals, --no-jpeg-draft) a WebP is left to Pillow at full size.
    assert vips_decode.decode(data, max_pixels=10**8) is None


@pytest.mark.parametrize("case", ["16-bit", "exif-rotated", "truncated", "jpeg", "too large"])
def test_what_libvips_would_treat_differently_is_left_to_pillow(case, tmp_path):
    if case == "16-bit":
        data = _bytes(Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)), "PNG")
    elif case == "exif-rotated":
        exif = Image.Exif()
        exif[0x0112] = 6
        data = _bytes(photo(7, 80, 40).transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif.tobytes())
    elif case == "truncated":
        whole = _bytes(photo(8, 200, 200), "PNG")
        data = whole[: len(whole) // 2]
    elif case == "jpeg":
        data = _bytes(photo(9, 64, 64), "JPEG")
    else:
        data = _bytes(Image.new("L", (3000, 3000)), "PNG")
    assert vips_decode.decode(data, max_pixels=1_000_000) is None
    path = tmp_path / "image"
    path.write_bytes(data)
    if case == "truncated":
        with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
            open_image(path)
    elif case == "too large":
        with pytest.raises(ImageDecodeError, match="decompression bomb"):
            open_image(path, max_pixels=1_000_000)
    elif case == "exif-rotated":
        assert open_image(path).size == (80, 40)  # upright, by Pillow's exif_transpose
    else:
        assert open_image(path).size == ((8, 8) if case == "16-bit" else (64, 64))


def test_edge_search_no_vips_decodes_everything_with_pillow(monkeypatch):
    monkeypatch.setattr(vips_decode, "_vips", None)
    monkeypatch.setenv(vips_decode.DISABLE_ENV, "1")
    assert vips_decode.decode(_bytes(photo(10, 40, 30), "PNG"), max_pixels=10**8) is None
