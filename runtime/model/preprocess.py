"""Image file -> float32 CHW array, reproducing the model's own Hugging Face image processor.

Pure numpy + Pillow. Matches `ViTImageProcessor` (and the DeiT / BiT processors: shortest-edge
resize and centre crop) to within 1e-6 on the pixel tensor, with these deliberate differences, all of
which only matter for images the reference pipeline mishandles:
- EXIF orientation is applied, so a phone photo is searched upright;
- transparent images are composited onto white (what a viewer shows) instead of exposing the hidden
  colour under alpha; 16-bit and float images are scaled to 8 bits instead of clipped.
Only an allowlist of formats is opened, so Ghostscript (EPS) and friends are never started.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge_search.runtime.errors import ImageDecodeError
from edge_search.runtime.host import default_threads
from edge_search.runtime.model import vips_decode
from edge_search.runtime.model.bundle import PreprocessConfig
from edge_search.runtime.model.signature import signature_of

BASE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (~89 MP)
# Pillow refuses images above twice its limit (~178 MP) whatever the caller allows; `open_image` checks the
# caller's limit itself (from the header, before decoding), so --max-megapixels above 178 is honoured.
Image.MAX_IMAGE_PIXELS = None
# JPEGs are decoded with DCT scaling to no less than this multiple of the resize target (e.g. 448 px
# for 224): measured by benchmarks/draft.py on 60 real JPEGs (AMD EPYC, AVX2), decoding and preprocessing take
# 1.89x less CPU than full decoding, and trained DINOv2 ViT-S/14 embeddings stay within cosine 0.9998 (mean
# 0.99998) of full decoding's; a factor of 1 saves only 8% more and drops to 0.996.
DRAFT_FACTOR = 2


def _optional_formats() -> tuple[str, ...]:
    """HEIC through pillow-heif when it is installed; AVIF through Pillow's own plugin where built in."""
    formats = []
    try:
        import pillow_heif
    except ImportError:
        pass
    else:
        pillow_heif.register_heif_opener()
        formats.append("HEIF")
    try:
        from PIL import AvifImagePlugin  # noqa: F401  (Pillow >= 11.2)

        formats.append("AVIF")
    except ImportError:
        pass
    return tuple(formats)


_ALLOWED: tuple[str, ...] | None = None
_CONTAINERS: tuple[str, ...] | None = None


def allowed_formats(containers: bool = False) -> tuple[str, ...]:
    """The allowlisted formats whose plugins are loaded (only those: `Image.init()` would import all
    of Pillow's ~40 plugins, a tenth of a second of every cold query). HEIF and AVIF (`containers`) only
    once an ISO-BMFF file turns up: their plugins cost ~0.07 s each to import, on every cold query otherwise."""
    global _ALLOWED, _CONTAINERS
    if _ALLOWED is None:
        from PIL import (  # noqa: F401
            BmpImagePlugin,
            GifImagePlugin,
            JpegImagePlugin,
            MpoImagePlugin,
            PngImagePlugin,
            TiffImagePlugin,
            WebPImagePlugin,
        )

        _ALLOWED = tuple(f for f in BASE_FORMATS if f in Image.OPEN)
    if not containers:
        return _ALLOWED
    if _CONTAINERS is None:
        _CONTAINERS = tuple(f for f in _optional_formats() if f in Image.OPEN)
    return _ALLOWED + _CONTAINERS


def open_allowed(source) -> Image.Image:
    """`Image.open` on the allowed formats, loading the HEIF/AVIF plugins only for an ISO-BMFF file."""
    try:
        return Image.open(source, formats=allowed_formats())
    except UnidentifiedImageError:
        if not _is_isobmff(source):
            raise
    if hasattr(source, "seek"):
        source.seek(0)
    return Image.open(source, formats=allowed_formats(containers=True))


def open_image(
    path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_hw: tuple[int, int] | None = None,
    label: Path | str | None = None,
    max_declared_pixels: int | None = None,
) -> Image.Image:
    """Decode frame 0 of an allowed image (a path or file object), upright (EXIF), fully loaded.

    PNG and WebP go through libvips when it can (faster, same pixels: see vips_decode), the rest and
    anything libvips declines through Pillow. A WebP may then be decoded reduced, as a JPEG is with draft.
    `max_pixels` bounds what is decoded (a drafted JPEG: its reduced size); `max_declared_pixels`, where given
    (uploads), bounds the size the header declares, before any decoding. A baseline JPEG too small to hold the
    pixels it declares is refused as truncated (libjpeg would fill the missing rows with grey and say nothing).

    Raises ImageDecodeError naming `label` (default: the path).
    """
    source, path = path, label if label is not None else path
    if max_declared_pixels is not None:
        _check_declared(source, path, max_declared_pixels)
    decoded = vips_decode.decode(source, max_pixels=max_pixels, draft_hw=draft_hw)
    if decoded is not None:
        return decoded
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = open_allowed(source)
        if image.format in ("JPEG", "MPO"):
            _check_jpeg_holds_its_pixels(image, source, path)
        if draft_hw is not None and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (draft_hw[1], draft_hw[0]))
        width, height = image.size  # what will be decoded: a drafted JPEG costs a fraction of its full size
        if width * height > max_pixels:
            image.close()
            raise ImageDecodeError(
                path,
                f"{width}x{height} pixels exceeds the limit of {max_pixels / 1e6:.0f} megapixels "
                "(a decompression bomb? if it is a real photo, raise the limit with --max-megapixels)",
            )
        image.load()
        return ImageOps.exif_transpose(image)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a directory") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except UnidentifiedImageError:
        if _is_empty(source):
            reason = "empty file"
        elif _is_heif(source) and "HEIF" not in allowed_formats(containers=True):
            reason = "a HEIC/HEIF image: reading it needs the heic extra (pip install 'edge-search[heic]')"
        else:
            reason = "not an image in a supported format"
        raise ImageDecodeError(path, reason) from None
    except Image.DecompressionBombError:  # (Pillow's own limit is lifted below: `max_pixels` is the one that counts)
        raise ImageDecodeError(path, "too large to decode; raise the limit with --max-megapixels") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise ImageDecodeError(path, f"corrupt or truncated image ({exc})") from None


# A baseline JPEG spends at least two bits (a DC code and an end-of-block) on every 8x8 block of every component:
# at least one byte per 256 pixels in greyscale, more in colour. A file under a quarter of that cannot hold its
# pixels: it was cut short, or it lies about its size to cost a large decode.
JPEG_MIN_PIXELS_PER_BYTE = 1024


def _source_bytes(source) -> int | None:
    if hasattr(source, "getbuffer"):
        return source.getbuffer().nbytes
    if isinstance(source, (str, os.PathLike)):
        try:
            return os.stat(source).st_size
        except OSError:
            return None
    return None


def _check_jpeg_holds_its_pixels(image: Image.Image, source, path) -> None:
    if image.info.get("progressive") or image.info.get("progression"):
        return  # progressive scans code runs of empty blocks in a few bits: no such bound
    size = _source_bytes(source)
    width, height = image.size
    if size is not None and size * JPEG_MIN_PIXELS_PER_BYTE < width * height:
        image.close()
        raise ImageDecodeError(path, f"truncated: {size} bytes cannot hold the {width}x{height} pixels it declares")


def declared_size(source) -> tuple[int, int] | None:
    """(width, height) as the image's header declares them, having decoded nothing; None where the header cannot
    be read (open_image then words the reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_allowed(source) as header:
                return header.size
    except Exception:
        return None
    finally:
        if hasattr(source, "seek"):
            source.seek(0)


def declared_pixels(data: bytes) -> int:
    """The pixels an uploaded image's header declares (0 where it has no readable header): what decoding it costs."""
    size = declared_size(io.BytesIO(data))
    return 0 if size is None else size[0] * size[1]


def _check_declared(source, path, max_pixels: int) -> None:
    """Refuse an image whose header declares more than `max_pixels`, having decoded nothing."""
    size = declared_size(source)
    if size is None:
        return
    width, height = size
    if width * height > max_pixels:
        raise ImageDecodeError(
            path, f"{width}x{height} pixels exceeds the limit of {max_pixels / 1e6:.0f} megapixels for a search"
        )


HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def _head(source) -> bytes:
    try:
        if isinstance(source, io.BytesIO):
            return source.getbuffer()[:12].tobytes()
        if hasattr(source, "read"):
            source.seek(0)
            head = source.read(12)
            source.seek(0)
            return head
        with open(source, "rb") as handle:
            return handle.read(12)
    except (OSError, TypeError):
        return b""


def _is_isobmff(source) -> bool:
    """An ISO base media file (HEIF, AVIF, MP4...): its first box is `ftyp`."""
    return _head(source)[4:8] == b"ftyp"


def _is_heif(source) -> bool:
    """An ISO-BMFF file whose brand says HEIF (AVIF has its own brand and opens through Pillow)."""
    head = _head(source)
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


@functools.cache
def default_max_pixels(workers: int) -> int:
    """The largest image (in pixels, after JPEG draft) that `workers` parallel decodes can hold in the
    memory available now: ~24 bytes a pixel each (decoded RGB(A), its conversion and resize copies),
    at most a quarter of available memory, between 24 and 178 megapixels (Pillow's default hard limit;
    --max-megapixels goes beyond it).
    Decided once per process, so every preprocessor a process builds for the same options is equal."""
    available = _available_memory()
    if available is None:
        return DEFAULT_MAX_PIXELS
    fit = available // 4 // (24 * max(1, workers))
    return int(min(max(fit, 24_000_000), 2 * DEFAULT_MAX_PIXELS))


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _is_empty(source) -> bool:
    if isinstance(source, io.BytesIO):
        return not source.getbuffer().nbytes
    try:
        return Path(source).stat().st_size == 0
    except (OSError, TypeError):
        return False


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB as a person would see it (alpha over white, high bit depth scaled)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255.0
        gray = np.clip(pixels * (255.0 / peak), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if has_alpha(image):
        return over_white(image.convert("RGBA"))
    return image.convert("RGB")


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def over_white(rgba: Image.Image) -> Image.Image:
    """An RGBA image as a viewer shows it on a white page."""
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def shortest_edge_hw(height: int, width: int, edge: int) -> tuple[int, int]:
    """(height, width) after resizing the short side to `edge`, as transformers computes it."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = edge, int(edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    top = (pixels.shape[0] - height) // 2
    left = (pixels.shape[1] - width) // 2
    if top < 0 or left < 0:
        padded = np.zeros((max(height, pixels.shape[0]), max(width, pixels.shape[1]), pixels.shape[2]), pixels.dtype)
        pad_top, pad_left = max(-top, 0), max(-left, 0)
        padded[pad_top : pad_top + pixels.shape[0], pad_left : pad_left + pixels.shape[1]] = pixels
        return center_crop(padded, height, width)
    return pixels[top : top + height, left : left + width]


def rescale_normalize(pixels: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """uint8 HWC -> float32 HWC; float64 rescale then float32 normalise, in transformers' order."""
    if config.do_rescale:
        values = (pixels.astype(np.float64) * config.rescale_factor).astype(np.float32)
    else:
        values = pixels.astype(np.float32)
    if config.do_normalize:
        mean = np.array(config.image_mean, dtype=np.float32)
        std = np.array(config.image_std, dtype=np.float32)
        values = (values - mean) / std
    return values


def _in_memory(data: bytes, label: Path | str) -> io.BytesIO:
    if not data:
        raise ImageDecodeError(label, "empty file")
    return io.BytesIO(data)


@dataclass(frozen=True)
class Preprocessor:
    """The manifest's processor settings, applied to a path or a decoded image."""

    config: PreprocessConfig
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_draft: bool = True
    draft_factor: int = DRAFT_FACTOR  # benchmarks/draft.py measures the others

    @classmethod
    def from_manifest(cls, manifest, **options) -> Preprocessor:
        return cls(config=manifest.preprocess, **options)

    @classmethod
    def for_options(
        cls, manifest, *, jpeg_draft: bool = True, max_megapixels: float | None = None, threads: int | None = None
    ) -> Preprocessor:
        """The preprocessor a model opened with these options uses (`--max-megapixels` unset: what
        `threads` parallel decoders can hold in memory)."""
        max_pixels = int(max_megapixels * 1e6) if max_megapixels else default_max_pixels(threads or default_threads())
        return cls(config=manifest.preprocess, max_pixels=max_pixels, jpeg_draft=jpeg_draft)

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.config.input_hw()

    def _resize_hw(self, height: int, width: int) -> tuple[int, int]:
        size = self.config.size
        if "shortest_edge" in size:
            return shortest_edge_hw(height, width, int(size["shortest_edge"]))
        return int(size["height"]), int(size["width"])

    def load(self, path: Path | str) -> np.ndarray:
        """Decode and preprocess one file; raises ImageDecodeError for that file only."""
        return self._prepared(path, path)[0]

    def load_bytes(self, data: bytes, label: Path | str, *, max_declared_pixels: int | None = None) -> np.ndarray:
        """Same as `load` on a file already read into memory (so it is hashed and decoded from one read).
        `max_declared_pixels`: refuse an image declaring more pixels than that before decoding (uploads)."""
        return self._prepared(_in_memory(data, label), label, max_declared_pixels)[0]

    def load_bytes_signed(self, data: bytes, label: Path | str) -> tuple[np.ndarray, bytes]:
        """`load_bytes`, and the picture's pixel signature (`signature.signature_of`) made from the same decode."""
        pixels, resized, aspect = self._prepared(_in_memory(data, label), label)
        return pixels, signature_of(resized, aspect=aspect)

    def _prepared(
        self, source, label: Path | str, max_declared_pixels: int | None = None
    ) -> tuple[np.ndarray, Image.Image, float]:
        """(model input, the picture resized before cropping, the upright image's width / height)."""
        image = self._decode(source, label, max_declared_pixels)
        try:
            pixels, resized = self.prepare(image)
        except (OSError, ValueError) as exc:
            raise ImageDecodeError(label, f"cannot convert the pixels ({exc})") from None
        return pixels, resized, image.width / max(1, image.height)

    def _decode(self, source, label: Path | str, max_declared_pixels: int | None = None) -> Image.Image:
        draft = None
        if self.jpeg_draft:
            height, width = self._resize_hw(*self.input_hw)
            draft = (self.draft_factor * height, self.draft_factor * width)
        return open_image(
            source, max_pixels=self.max_pixels, draft_hw=draft, label=label, max_declared_pixels=max_declared_pixels
        )

    def from_image(self, image: Image.Image) -> np.ndarray:
        """An already-decoded image -> float32 CHW."""
        return self.prepare(image)[0]

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, Image.Image]:
        """(float32 CHW, the picture resized before cropping: what the pixel signature is made from, cheaply).

        A transparent image is resized first and laid over white after (Pillow resizes RGBA with
        premultiplied alpha, so the order does not change the result beyond rounding: embeddings within
        cosine 0.999998 on real PNGs), which makes alpha compositing ~50x cheaper on a large PNG.
        """
        cfg = self.config
        if cfg.do_resize and has_alpha(image):
            rgba = image.convert("RGBA")
            height, width = self._resize_hw(rgba.height, rgba.width)
            resized = rgba.resize((width, height), resample=Image.Resampling(cfg.resample))
            pixels = np.asarray(over_white(resized))
        elif cfg.do_resize:
            rgb = to_rgb(image)
            height, width = self._resize_hw(rgb.height, rgb.width)
            resized = rgb.resize((width, height), resample=Image.Resampling(cfg.resample))
            pixels = np.asarray(resized)
        else:
            resized = image
            pixels = np.asarray(to_rgb(image))
        if cfg.do_center_crop and cfg.crop_size:
            pixels = center_crop(pixels, int(cfg.crop_size["height"]), int(cfg.crop_size["width"]))
        return np.ascontiguousarray(rescale_normalize(pixels, cfg).transpose(2, 0, 1)), resized
