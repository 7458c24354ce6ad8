"""The videos of an index run: each is hashed, then its sampled frames (`model.video`) are embedded like photos and
committed together with the video's row, one transaction per video.

A video whose content (sha256) was embedded before reuses those frames: moved, renamed, copied or touched, it is
never decoded again. A broken or unsupported video is recorded as failed with its reason, like a broken photo;
Ctrl-C stops between frames, and the video in progress is left for the next run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_search.runtime.errors import ImageDecodeError
from edge_search.runtime.files import open_regular, sha256_file
from edge_search.runtime.model.embedder import Embedder, unreadable
from edge_search.runtime.model.preprocess import DRAFT_FACTOR
from edge_search.runtime.model.thumbnail import encode_thumbnail
from edge_search.runtime.model.video import Frame, SamplingRule, VideoReader
from edge_search.runtime.store.catalog import FrameRow

DEFAULT_RULE = SamplingRule()


@dataclass(frozen=True)
class VideoFrames:
    """A video's embedded frames, or why there are none; `stopped`: Ctrl-C came first (nothing to commit)."""

    sha256: str | None
    frames: list[FrameRow] | None = None
    error: str | None = None
    stopped: bool = False


def hash_video(path: str) -> tuple[str, None] | tuple[None, str]:
    """(sha256, None) or (None, why the file cannot be read): read in blocks through a regular-file descriptor."""
    try:
        fd, _ = open_regular(path)
    except OSError as exc:
        return None, unreadable(exc)
    try:
        return sha256_file(fd), None
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})"


class VideoEmbedder:
    """Embeds the sampled frames of one video at a time with this process's model."""

    def __init__(self, embedder: Embedder, rule: SamplingRule = DEFAULT_RULE):
        self.embedder = embedder
        self.rule = rule
        preprocessor = embedder.preprocessor
        # decoded frames are scaled to twice the model's input first, as JPEGs are drafted (`DRAFT_FACTOR`)
        self.shortest_side = DRAFT_FACTOR * max(preprocessor.input_hw)

    def frames(self, path: str, sha: str, stop: threading.Event | None = None) -> VideoFrames:
        """The video's frames embedded, or the reason it failed."""
        rows: list[FrameRow] = []
        batch: list[Frame] = []
        try:
            with VideoReader(
                path, max_pixels=self.embedder.preprocessor.max_pixels, shortest_side=self.shortest_side
            ) as reader:
                for frame in reader.frames(self.rule):
                    if stop is not None and stop.is_set():
                        return VideoFrames(sha, stopped=True)
                    batch.append(frame)
                    if len(batch) >= self.embedder.batch_size:
                        rows.extend(self._embed(batch))
                        batch = []
                rows.extend(self._embed(batch))
        except ImageDecodeError as exc:
            return VideoFrames(sha, error=exc.reason)
        except MemoryError:
            return VideoFrames(sha, error="out of memory while decoding")
        return VideoFrames(sha, frames=rows)

    def _embed(self, batch: list[Frame]) -> Iterator[FrameRow]:
        if not batch:
            return
        pixels = np.stack([self.embedder.preprocessor.from_image(frame.image) for frame in batch])
        vectors = self.embedder.embed_pixels(pixels)
        for frame, vector in zip(batch, vectors):
            yield frame.at, vector, encode_thumbnail(frame.image)  # its pixels are taken: it may shrink
