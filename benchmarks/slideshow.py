"""Videos made for measuring and testing from real photos: a slideshow with cuts, fades and pans, encoded by PyAV
(H.264 through libx264, HEVC through libx265, both inside PyAV's wheel).

Each photo holds the screen for `seconds_each`; `spans` says which seconds show which photo (the transition
into a photo counts as the start of its span), so a test or a benchmark knows where each picture is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

CODECS = {"h264": "libx264", "hevc": "libx265"}


@dataclass(frozen=True)
class Span:
    photo: Path
    start: float
    end: float
    transition: str  # how this photo came on screen: "first", "cut", "fade" or "pan"


def _fit(photo: Path, size: tuple[int, int], zoom: float = 1.0) -> Image.Image:
    with Image.open(photo) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        width, height = size
        return ImageOps.fit(image, (int(width * zoom), int(height * zoom)), Image.Resampling.BILINEAR)


def make_slideshow(
    photos: Sequence[Path],
    output: Path,
    *,
    codec: str = "h264",
    size: tuple[int, int] = (1920, 1080),
    fps: int = 30,
    seconds_each: float = 3.0,
    transitions: Sequence[str] = ("cut", "fade", "pan"),
    fade_s: float = 0.5,
    options: dict[str, str] | None = None,
) -> list[Span]:
    """Write the slideshow to `output` (container from its suffix) and return each photo's span. Photo i comes on
    by `transitions[i % len]` (a fade blends the last `fade_s` of the previous photo into it; a pan slides across
    the photo, enlarged, for its whole span). `options`: the encoder's (e.g. {"preset": "veryfast"})."""
    import av

    spans: list[Span] = []
    frames_each = int(round(seconds_each * fps))
    fade_frames = int(round(fade_s * fps))
    with av.open(str(output), mode="w") as container:
        stream = container.add_stream(CODECS.get(codec, codec), rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {**({"x265-params": "log-level=error"} if codec == "hevc" else {}), **(options or {})}
        index = 0
        previous: np.ndarray | None = None
        for number, photo in enumerate(photos):
            transition = "first" if number == 0 else transitions[(number - 1) % len(transitions)]
            spans.append(Span(photo, number * seconds_each, (number + 1) * seconds_each, transition))
            still = np.asarray(_fit(photo, size))
            wide = np.asarray(_fit(photo, size, zoom=1.25)) if transition == "pan" else None
            for step in range(frames_each):
                if wide is not None:
                    shift_x = int((wide.shape[1] - size[0]) * step / max(1, frames_each - 1))
                    shift_y = (wide.shape[0] - size[1]) // 2
                    picture = wide[shift_y : shift_y + size[1], shift_x : shift_x + size[0]]
                else:
                    picture = still
                if transition == "fade" and previous is not None and step < fade_frames:
                    share = (step + 1) / (fade_frames + 1)
                    picture = (previous * (1 - share) + picture * share).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
            previous = picture
        for packet in stream.encode():
            container.mux(packet)
    return spans
