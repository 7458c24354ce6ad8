"""Preprocessing: equal to the model's own Hugging Face processor, and sane on every image kind users meet."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import photo
from edge_search.export.preprocess_config import preprocess_config
from edge_search.runtime.errors import ImageDecodeError
from edge_search.runtime.model.preprocess import Preprocessor, open_image, to_rgb

SIZES = [
    (224, 224),
    (640, 480),
    (480, 640),
    (333, 101),
    (97, 1200),
    (1, 1),
    (17, 3),
    (3000, 2000),
    (225, 223),
    (50, 50),
]


def runtime_for(processor) -> Preprocessor:
    return Preprocessor(config=preprocess_config(processor))


@pytest.mark.parametrize("width,height", SIZES)
def test_matches_vit_image_processor_to_1e6(width, height):
    from transformers import ViTImageProcessor

    processor = ViTImageProcessor()  # google/vit-base-patch16-224's settings: 224x224 bilinear, mean=std=0.5
    image = photo(width * 7 + height, width, height)
    # channels_last: for tiny images like 17x3 the processor cannot guess which axis holds the channels
    expected = processor(images=image, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
    got = runtime_for(processor).from_image(image)
    assert got.dtype == np.float32 and got.shape == (3, 224, 224)
    assert np.abs(got - expected).max() <= 1e-6


@pytest.mark.parametrize("width,height", [(640, 480), (300, 900), (256, 256), (101, 333)])
def test_matches_shortest_edge_and_center_crop_processors(width, height):
    from transformers import BitImageProcessor, DeiTImageProcessor

    image = photo(width + height, width, height)
    for processor in (
        DeiTImageProcessor(),
        BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}),
    ):
        expected = processor(images=image, return_tensors="np")["pixel_values"][0]
        assert np.abs(runtime_for(processor).from_image(image) - expected).max() <= 1e-6


def _encoded(image: Image.Image, fmt: str, **kw) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    buffer.seek(0)
    return buffer


def test_modes_users_meet_become_rgb_as_seen():
    base = photo(1, 64, 48)
    assert to_rgb(base.convert("L")).mode == "RGB"
    assert to_rgb(base.convert("1")).mode == "RGB"
    cmyk = open_image(_encoded(base.convert("CMYK"), "JPEG"))
    assert cmyk.mode == "CMYK" and to_rgb(cmyk).mode == "RGB"
    # Transparent pixels are shown over white, not as the colour hidden under the alpha.
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(rgba.convert("LA")).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (8, 8), 0)
    palette.info["transparency"] = 0
    assert to_rgb(open_image(_encoded(palette, "PNG", transparency=0))).getpixel((0, 0)) == (255, 255, 255)
    # 16-bit grey is scaled to 8 bits, not clipped to white.
    deep = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    assert abs(to_rgb(open_image(_encoded(deep, "PNG"))).getpixel((0, 0))[0] - 128) <= 1


def test_exif_orientation_is_applied():
    upright = photo(2, 80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers turn it 90° clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    opened = open_image(_encoded(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert opened.size == (80, 40)


def test_animated_images_use_the_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    buffer.seek(0)
    r, g, b = to_rgb(open_image(buffer)).getpixel((8, 8))
    assert r > 200 and b < 50


def test_decompression_bombs_are_errors_for_that_file(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (5000, 5000)).save(path)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        open_image(path, max_pixels=1_000_000)


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.jpg", b"", "empty file"),
        ("noise.jpg", bytes(range(256)) * 10, "not an image"),
        ("note.png", b"hello, I am text", "not an image"),
        ("doc.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "not an image"),
        ("art.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "not an image"),
    ],
)
def test_files_that_are_not_images_are_errors_for_that_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason) as failure:
        open_image(path)
    assert failure.value.path == path


def test_truncated_images_are_errors(tmp_path):
    for fmt, name in (("JPEG", "cut.jpg"), ("PNG", "cut.png")):
        data = _encoded(photo(3, 200, 200), fmt).getvalue()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
            open_image(tmp_path / name)


def test_a_png_named_jpg_is_read_by_its_content(tmp_path):
    path = tmp_path / "really-a-png.jpg"
    photo(4, 50, 40).save(path, "PNG")
    assert open_image(path).size == (50, 40)


@pytest.mark.parametrize("suffix", [".heic", ".avif"])
def test_heic_and_avif_open_when_their_plugins_are_installed(tmp_path, suffix):
    pytest.importorskip("pillow_heif")
    from edge_search.runtime.model.preprocess import allowed_formats

    allowed_formats(containers=True)  # registers pillow-heif's opener, for saving
    path = tmp_path / f"phone{suffix}"
    photo(9, 120, 90).save(path)
    assert open_image(path).size == (120, 90)


def test_the_heif_and_avif_plugins_are_imported_only_when_such_a_file_turns_up(tmp_path):
    """Their imports cost a cold query ~0.1 s; a folder of JPEGs never pays it."""
    pytest.importorskip("pillow_heif")
    photo(3, 60, 40).save(tmp_path / "a.jpg")
    script = (
        "import sys\n"
        "from edge_search.runtime.model.preprocess import allowed_formats, open_image\n"
        f"open_image({str(tmp_path / 'a.jpg')!r})\n"
        "print('pillow_heif' in sys.modules, 'PIL.AvifImagePlugin' in sys.modules)\n"
        "allowed_formats(containers=True)\n"
        "print('pillow_heif' in sys.modules)\n"
    )
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert answer.split() == ["False", "False", "True"]


def test_a_transparent_image_is_resized_before_it_is_laid_over_white_with_the_same_result():
    from transformers import ViTImageProcessor

    from edge_search.runtime.model.preprocess import over_white

    rgb = photo(77, 900, 600)
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, 900, dtype=np.uint8), (600, 1)), "L")
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    runtime = runtime_for(ViTImageProcessor(size={"height": 224, "width": 224}))
    fast, composited_first = runtime.from_image(rgba), runtime.from_image(over_white(rgba))
    assert np.abs(fast - composited_first).max() <= 2.5 / 255 / 0.5  # rounding of two 8-bit steps, in normalised units
    assert (
        np.abs(fast[:, :, 0] - 1.0).max() < 0.05
    )  # the fully transparent left edge shows white (1.0 after normalising)
