"""Frames of a video worth embedding: decoded through PyAV (FFmpeg inside a wheel: the `video` extra), sampled
where the picture changes, and scaled down before anything else sees them.

The sampling rule (`SamplingRule`, chosen by `benchmarks/video.py`): every `step_s` seconds of video a candidate
frame is reduced to a 16×16 grey thumbnail. The first frame is kept. When a candidate differs from the last kept
frame by more than `change` (mean absolute difference, 0..1), a change has begun; the frame is kept once the
picture settles (two candidates in a row within `change / 2` of each other: the end of a cut, a fade or a pan),
or `settle_s` after the change began if it never settles (a long pan). Without any change a frame is kept every
`max_gap_s` all the same. Non-reference frames (most B-frames) are not decoded at all: a candidate every quarter
second never needs them, and skipping them saves a third of the decoding.

A video is streamed: memory holds the decoder's frames and the kept frames' small pictures, never the file, and
`max_frames` bounds the kept frames of a very long video. A stream declaring more pixels than `max_pixels` is
refused before a frame is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image

from edge_search.runtime.errors import ImageDecodeError
from edge_search.runtime.files import open_regular
from edge_search.runtime.model.embedder import unreadable

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".3gp", ".mts", ".m2ts"})
INSTALL_HINT = "pip install 'edge-search[video]'"


def is_video_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES


def available() -> bool:
    """Whether videos can be decoded here (PyAV installed)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class SamplingRule:
    """Which decoded frames are embedded (see the module's docstring)."""

    step_s: float = 0.25
    change: float = 0.06
    settle_s: float = 1.0
    max_gap_s: float = 10.0
    max_frames: int = 3000
    keyframes_only: bool = False  # decode keyframes alone, keep each that passes the rule (a benchmark variant)
    skip_nonref: bool = True  # B-frames are never candidates at a quarter-second step: not decoded at all


@dataclass(frozen=True)
class Frame:
    """A kept frame: its time in seconds from the start and the picture, scaled down (RGB)."""

    at: float
    image: Image.Image


@dataclass(frozen=True)
class VideoFacts:
    """What the container says: the duration in seconds (None: unknown) and when it was recorded (None: not
    recorded)."""

    duration: float | None
    created: datetime | None


def _tiny(frame: Any) -> np.ndarray:
    """The 16×16 grey picture the change rule compares, values 0..1."""
    small = frame.reformat(width=16, height=16, format="gray")
    return small.to_ndarray().astype(np.float32) / 255.0


def _scaled_size(width: int, height: int, shortest: int) -> tuple[int, int]:
    """(width, height) with the shorter side at most `shortest`, even numbers (what swscale handles best)."""
    scale = min(1.0, shortest / max(1, min(width, height)))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


class FrameSampler:
    """Decides, candidate by candidate, which frames to keep (the rule, apart from decoding)."""

    def __init__(self, rule: SamplingRule):
        self.rule = rule
        self.kept_tiny: np.ndarray | None = None
        self.kept_at = -1e9
        self.previous: np.ndarray | None = None
        self.change_began: float | None = None
        self.next_candidate = -1e9

    def wants(self, at: float) -> bool:
        """Whether the frame at `at` is a candidate (one per `step_s`)."""
        return at >= self.next_candidate

    def keep(self, at: float, tiny: np.ndarray) -> bool:
        rule = self.rule
        self.next_candidate = at + rule.step_s
        previous, self.previous = self.previous, tiny
        if self.kept_tiny is None:
            return self._kept(at, tiny)
        if self.change_began is None and float(np.abs(tiny - self.kept_tiny).mean()) > rule.change:
            self.change_began = at
        if self.change_began is not None:
            settled = previous is not None and float(np.abs(tiny - previous).mean()) <= rule.change / 2
            if settled or at - self.change_began >= rule.settle_s:
                return self._kept(at, tiny)
            return False
        if at - self.kept_at >= rule.max_gap_s:
            return self._kept(at, tiny)
        return False

    def _kept(self, at: float, tiny: np.ndarray) -> bool:
        self.kept_tiny, self.kept_at, self.change_began = tiny, at, None
        return True


class VideoReader:
    """One video file, opened as a regular file (a FIFO or device is refused unread) and read through PyAV."""

    def __init__(self, path: str | os.PathLike[str], *, max_pixels: int, shortest_side: int):
        import av  # the `video` extra; imported only when a video turns up

        self._av = av
        self.path = os.fspath(path)
        self.max_pixels = max_pixels
        self.shortest_side = shortest_side
        try:
            fd, _ = open_regular(self.path)
        except OSError as exc:
            raise ImageDecodeError(self.path, unreadable(exc)) from None
        self._handle = os.fdopen(fd, "rb")
        try:
            self._container = av.open(self._handle, mode="r", metadata_errors="ignore")
            streams = self._container.streams.video
            if not streams:
                raise ImageDecodeError(self.path, "no video stream in the file")
            self._stream = streams[0]
        except av.FFmpegError as exc:
            self.close()
            raise ImageDecodeError(self.path, f"cannot read the video ({_ffmpeg_reason(exc)})") from None
        except BaseException:
            self.close()
            raise
        context = self._stream.codec_context
        if context.width * context.height > max_pixels:
            self.close()
            raise ImageDecodeError(
                self.path,
                f"the video's frames are {context.width}×{context.height} pixels, more than the limit of "
                f"{max_pixels / 1e6:.0f} megapixels",
            )

    @classmethod
    def recorded_at(cls, path: str | os.PathLike[str]) -> datetime | None:
        """When the container says the video was recorded (an aware datetime), or None: read from the header."""
        try:
            with cls(path, max_pixels=2**62, shortest_side=1) as reader:
                return reader.facts().created
        except ImageDecodeError:
            return None

    def facts(self) -> VideoFacts:
        duration = None
        if self._stream.duration is not None and self._stream.time_base is not None:
            duration = float(self._stream.duration * self._stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / 1e6
        created = None
        stamp = self._container.metadata.get("creation_time") or self._stream.metadata.get("creation_time")
        if stamp:
            try:
                created = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                created = None
            if created is not None and (created.tzinfo is None or created.year < 1971):
                created = None  # no zone to place it in, or the 1904/1970 "unset" of a camera without a clock
        return VideoFacts(duration, created)

    def frames(self, rule: SamplingRule) -> Iterator[Frame]:
        """The kept frames, in order; ImageDecodeError when the stream cannot be decoded."""
        stream = self._stream
        stream.thread_type = "AUTO"
        stream.codec_context.skip_frame = (
            "NONKEY" if rule.keyframes_only else "NONREF" if rule.skip_nonref else "DEFAULT"
        )
        known_start = stream.start_time is not None and stream.time_base is not None
        start = float(stream.start_time * stream.time_base) if known_start else 0.0  # type: ignore[operator]
        sampler = FrameSampler(rule)
        kept = 0
        try:
            for frame in self._container.decode(stream):
                if frame.time is None:
                    continue
                at = max(0.0, float(frame.time) - start)
                if not rule.keyframes_only and not sampler.wants(at):
                    continue
                if sampler.keep(at, _tiny(frame)):
                    width, height = _scaled_size(frame.width, frame.height, self.shortest_side)
                    yield Frame(at, frame.to_image(width=width, height=height))
                    kept += 1
                    if kept >= rule.max_frames:
                        return
        except self._av.FFmpegError as exc:
            raise ImageDecodeError(self.path, f"cannot decode the video ({_ffmpeg_reason(exc)})") from None
        if kept == 0:
            raise ImageDecodeError(self.path, "no frame of the video could be decoded")

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
        self._handle.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's words without the file name PyAV appends."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).rstrip(".")


def format_time(seconds: float) -> str:
    """'01:23' (or '1:02:03' past an hour): how a moment of a video is shown."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
